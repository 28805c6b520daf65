"""Puts a file as a multipart object with a full-object CRC32C, the way an
AWS SDK does (boto3 with the CRT's checksums): CreateMultipartUpload with
ChecksumAlgorithm CRC32C and ChecksumType FULL_OBJECT, each part with its
CRC32C, and the whole object's CRC32C in CompleteMultipartUpload.

Usage: put_full_object.py ENDPOINT ACCESS SECRET REGION BUCKET KEY FILE PART_SIZE
Prints what HeadObject with ChecksumMode ENABLED then says (JSON)."""

import base64
import json
import sys

import boto3
from awscrt import checksums
from botocore.config import Config

endpoint, access, secret, region, bucket, key, path, part_size = sys.argv[1:9]
part_size = int(part_size)
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    aws_access_key_id=access,
    aws_secret_access_key=secret,
    region_name=region,
    config=Config(s3={"addressing_style": "path"}),
)
data = open(path, "rb").read()
b64 = lambda crc: base64.b64encode(crc.to_bytes(4, "big")).decode()
upload = s3.create_multipart_upload(
    Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32C", ChecksumType="FULL_OBJECT"
)
parts = []
for i, at in enumerate(range(0, len(data), part_size), 1):
    chunk = data[at : at + part_size]
    crc = b64(checksums.crc32c(chunk))
    r = s3.upload_part(
        Bucket=bucket,
        Key=key,
        UploadId=upload["UploadId"],
        PartNumber=i,
        Body=chunk,
        ChecksumCRC32C=crc,
    )
    parts.append({"PartNumber": i, "ETag": r["ETag"], "ChecksumCRC32C": crc})
s3.complete_multipart_upload(
    Bucket=bucket,
    Key=key,
    UploadId=upload["UploadId"],
    MultipartUpload={"Parts": parts},
    ChecksumCRC32C=b64(checksums.crc32c(data)),
    ChecksumType="FULL_OBJECT",
)
head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
print(json.dumps({
    "etag": head["ETag"].strip('"'),
    "crc32c": head.get("ChecksumCRC32C"),
    "type": head.get("ChecksumType"),
    "full": b64(checksums.crc32c(data)),
}))
