#!/usr/bin/env python3
"""Posts deliveries built by the official SDKs to a running Persistor and prints, as one JSON
object on stdout, exactly what went over the wire, so the Swift test can compare the archive.

usage: eventgrid_send.py MODE URL
MODE:
  eventgrid-batch   azure-eventgrid EventGridEvent objects, sent by EventGridPublisherClient
  cloudevent-azure  azure.core CloudEvent objects, sent by EventGridPublisherClient (structured)
  ce-structured     CNCF cloudevents SDK, to_structured, posted with requests
  ce-binary         CNCF cloudevents SDK, to_binary (binary data + percent-encoded attribute), posted with requests
Output: {"status": int, "requests": [{"headers": {...}, "body_b64": "..."}], "ids": [...]}
"""
import base64
import json
import sys

from urllib.parse import quote

import requests


def capture_hook(sink):
    def hook(pipeline_request):
        request = pipeline_request.http_request
        body = request.body if isinstance(request.body, (bytes, bytearray)) else str(request.body).encode()
        sink.append({"headers": dict(request.headers), "body_b64": base64.b64encode(body).decode()})
    return hook


def send_with_publisher(url, events):
    from azure.core.credentials import AzureKeyCredential
    from azure.eventgrid import EventGridPublisherClient

    sent = []
    client = EventGridPublisherClient(url, AzureKeyCredential("test-key"))
    client.send(events, raw_request_hook=capture_hook(sent))
    return 200, sent


def main():
    mode, url = sys.argv[1], sys.argv[2]
    if mode == "eventgrid-batch":
        from azure.eventgrid import EventGridEvent

        events = [
            EventGridEvent(subject="/orders/1", event_type="Contoso.Orders.Created", data={"order": 1, "note": "é ] } \" \\"}, data_version="1.0"),
            EventGridEvent(subject="/orders/2", event_type="Contoso.Orders.Created", data=[1, [2, [3]]], data_version="2.0"),
            EventGridEvent(subject="/orders/3", event_type="Contoso.Orders.Deleted", data="plain string 😀", data_version="1.0"),
        ]
        status, sent = send_with_publisher(url, events)
        ids = [str(e.id) for e in events]
    elif mode == "cloudevent-azure":
        from azure.core.messaging import CloudEvent

        events = [
            CloudEvent(source="/contoso/orders", type="Contoso.Orders.Created", data={"order": 7}, subject="o/7"),
            CloudEvent(source="/contoso/orders", type="Contoso.Orders.Binary", data=b"\x00\x01\xfe\xff", datacontenttype="application/octet-stream"),
        ]
        status, sent = send_with_publisher(url, events)
        ids = [str(e.id) for e in events]
    elif mode in ("ce-structured", "ce-binary"):
        from cloudevents.v1.conversion import to_binary, to_structured
        from cloudevents.v1.http import CloudEvent

        if mode == "ce-structured":
            event = CloudEvent({"type": "com.example.structured", "source": "/example/s", "subject": "x"}, {"k": "v", "n": [1, 2]})
            headers, body = to_structured(event)
        else:
            event = CloudEvent({"type": "com.example.binary", "source": "/example/b", "subject": "Euro € 😀"}, b"\x00binary\xffdata")
            headers, body = to_binary(event)
            # The SDK leaves header values as they are; the HTTP binding wants them percent-encoded:
            # space, '"', '%' and anything outside U+0021..U+007E (§3.1.3.2 of
            # https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/bindings/http-protocol-binding.md).
            safe = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
            headers = {k: (quote(v, safe=safe) if k.startswith("ce-") else v) for k, v in headers.items()}
            headers["content-type"] = "application/octet-stream"
        response = requests.post(url, headers=headers, data=body, timeout=10)
        status = response.status_code
        sent = [{"headers": dict(headers), "body_b64": base64.b64encode(body).decode()}]
        ids = [event["id"]]
    else:
        sys.exit(f"unknown mode {mode}")
    json.dump({"status": status, "requests": sent, "ids": ids}, sys.stdout)


if __name__ == "__main__":
    main()
