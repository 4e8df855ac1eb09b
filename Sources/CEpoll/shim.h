#ifndef CEPOLL_SHIM_H
#define CEPOLL_SHIM_H
// epoll(7) and eventfd(2) are part of glibc but not of the Glibc Swift module.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#endif
