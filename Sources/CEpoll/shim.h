#ifndef CEPOLL_SHIM_H
#define CEPOLL_SHIM_H
// epoll(7) is part of glibc but not of the Glibc Swift module.
#include <sys/epoll.h>
#endif
