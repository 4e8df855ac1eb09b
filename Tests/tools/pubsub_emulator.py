#!/usr/bin/env python3
"""Drives Google's Pub/Sub emulator with the official google-cloud-pubsub client, for the end-to-end
test in which the emulator pushes to the real Persistor binary (PubSubEmulatorTests.swift).

The client finds the emulator through PUBSUB_EMULATOR_HOST (host:port), as applications do; the
emulator needs no credentials.

  pubsub_emulator.py setup SPEC.json     create topics and push subscriptions
  pubsub_emulator.py publish SPEC.json   publish messages, print their message ids

setup SPEC: {"project": "p", "topics": [{"name": "t", "subscriptions": [
               {"name": "s", "endpoint": "http://127.0.0.1:8080/push", "noWrapper": false,
                "writeMetadata": false}]}]}
  prints {"topics": [...], "subscriptions": [{"name", "topic", "pushEndpoint", "noWrapper",
          "writeMetadata"}]}, each subscription as the emulator reports it back.
publish SPEC: {"project": "p", "messages": [{"topic": "t", "dataBase64": "...",
                 "attributes": {"k": "v"}, "orderingKey": ""}]}
  prints {"messageIds": [...]} in the order of the messages.
Output is one JSON object on stdout; errors go to stderr with a non-zero exit.
"""
import base64
import json
import os
import sys

from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.types import PushConfig

TIMEOUT = 30  # seconds for each call to the emulator


def setup(spec):
    project = spec["project"]
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topics, subscriptions = [], []
    with subscriber:
        for topic_spec in spec["topics"]:
            topic = publisher.topic_path(project, topic_spec["name"])
            publisher.create_topic(request={"name": topic}, timeout=TIMEOUT)
            topics.append(topic)
            for sub_spec in topic_spec["subscriptions"]:
                push_config = PushConfig(push_endpoint=sub_spec["endpoint"])
                if sub_spec.get("noWrapper"):
                    push_config.no_wrapper = PushConfig.NoWrapper(write_metadata=bool(sub_spec.get("writeMetadata")))
                name = subscriber.subscription_path(project, sub_spec["name"])
                subscriber.create_subscription(
                    request={"name": name, "topic": topic, "push_config": push_config,
                             "ack_deadline_seconds": sub_spec.get("ackDeadlineSeconds", 10)},
                    timeout=TIMEOUT)
                # Read it back: what the emulator keeps is what it pushes with.
                got = subscriber.get_subscription(request={"subscription": name}, timeout=TIMEOUT)
                wrapper = got.push_config._pb.WhichOneof("wrapper")
                subscriptions.append({
                    "name": got.name,
                    "topic": got.topic,
                    "pushEndpoint": got.push_config.push_endpoint,
                    "noWrapper": wrapper == "no_wrapper",
                    "writeMetadata": wrapper == "no_wrapper" and got.push_config.no_wrapper.write_metadata,
                })
    return {"topics": topics, "subscriptions": subscriptions}


def publish(spec):
    project = spec["project"]
    # Ordering keys need message ordering on the publisher.
    publisher = pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True))
    futures = []
    for message in spec["messages"]:
        data = base64.b64decode(message.get("dataBase64", ""), validate=True)
        attributes = message.get("attributes", {})
        futures.append(publisher.publish(publisher.topic_path(project, message["topic"]), data,
                                         ordering_key=message.get("orderingKey", ""), **attributes))
    ids = [future.result(timeout=TIMEOUT) for future in futures]
    publisher.stop()
    return {"messageIds": ids}


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("setup", "publish"):
        sys.exit("usage: pubsub_emulator.py setup|publish SPEC.json")
    if not os.environ.get("PUBSUB_EMULATOR_HOST"):
        sys.exit("PUBSUB_EMULATOR_HOST is not set (host:port of the Pub/Sub emulator)")
    with open(sys.argv[2], encoding="utf-8") as handle:
        spec = json.load(handle)
    result = setup(spec) if sys.argv[1] == "setup" else publish(spec)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
