#!/usr/bin/env python3
"""The official azure-storage-blob client as the tests' reader of an Azure (or fake) blob container.

  azure_read.py create-container CONNECTION_STRING CONTAINER
  azure_read.py container-sas CONNECTION_STRING CONTAINER      service SAS (sr=c, create+write, 1 h)
  azure_read.py read CONNECTION_STRING CONTAINER [PREFIX]

`read` prints {"blobs": [{"name", "bytesBase64" (as stored: download_blob(decompress=False)),
"contentType", "contentEncoding", "contentMD5" (base64, null when the blob has none), "metadata",
"committedBlocks"}]} for every blob under PREFIX.
"""
import base64, json, sys
from datetime import datetime, timedelta, timezone

from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas


def main(command, connection_string, container, prefix=None):
    service = BlobServiceClient.from_connection_string(connection_string)
    if command == "create-container":
        service.create_container(container)
        return {"created": container}
    if command == "container-sas":
        token = generate_container_sas(service.account_name, container, account_key=service.credential.account_key,
                                       permission=ContainerSasPermissions(create=True, write=True),
                                       expiry=datetime.now(timezone.utc) + timedelta(hours=1))
        return {"sas": token}
    if command != "read":
        raise SystemExit(f"unknown command {command}")
    client = service.get_container_client(container)
    blobs = []
    for item in client.list_blobs(name_starts_with=prefix):
        blob = client.get_blob_client(item.name)
        properties = blob.get_blob_properties()
        committed, _ = blob.get_block_list("committed")
        blobs.append({
            "name": item.name,
            "bytesBase64": base64.b64encode(blob.download_blob(decompress=False).readall()).decode(),
            "contentType": properties.content_settings.content_type,
            "contentEncoding": properties.content_settings.content_encoding,
            "contentMD5": (base64.b64encode(properties.content_settings.content_md5).decode()
                           if properties.content_settings.content_md5 else None),
            "metadata": properties.metadata,
            "committedBlocks": [{"id": b.id, "size": b.size} for b in committed],
        })
    return {"blobs": blobs}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
