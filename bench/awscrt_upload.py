"""Uploads every file of a directory with the AWS CRT S3 client (awscrt), all
at once: one PUT_OBJECT meta request per file with send_filepath, the
client's defaults otherwise (throughput target, part size, multipart
threshold, connection count, no checksum). The CRT schedules them itself.

Usage: python awscrt_upload.py DIR ENDPOINT BUCKET PREFIX
Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; region
us-east-1 (or AWS_DEFAULT_REGION). ENDPOINT is http://HOST:PORT (plain HTTP;
an https:// endpoint turns TLS on). Exits 1 if any file failed.
"""

import os
import sys
from urllib.parse import quote

from awscrt.http import HttpHeaders, HttpRequest
from awscrt.s3 import S3RequestType

from awscrt_client import make_client


def main() -> int:
    directory, endpoint, bucket, prefix = sys.argv[1:5]
    client, host = make_client(endpoint)

    files = sorted(
        (e for e in os.scandir(directory) if e.is_file(follow_symlinks=False)),
        key=lambda e: e.name,
    )
    requests = []
    for entry in files:
        size = entry.stat().st_size
        key = prefix + entry.name
        headers = HttpHeaders(
            [
                ("Host", host),
                ("Content-Length", str(size)),
                ("Content-Type", "application/octet-stream"),
            ]
        )
        path = "/" + quote(bucket) + "/" + quote(key, safe="/")
        request = HttpRequest("PUT", path, headers)
        requests.append(
            (
                entry.name,
                client.make_request(
                    type=S3RequestType.PUT_OBJECT,
                    request=request,
                    send_filepath=entry.path,
                ),
            )
        )

    failed = 0
    for name, req in requests:
        try:
            req.finished_future.result()
        except Exception as e:  # noqa: BLE001 - report every failure
            failed += 1
            if failed <= 5:
                print(f"awscrt_upload: {name}: {e!r}", file=sys.stderr)
    if failed:
        print(f"awscrt_upload: {failed} of {len(requests)} failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
