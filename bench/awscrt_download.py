"""Downloads objects with the AWS CRT S3 client (awscrt), all at once: one
GET_OBJECT meta request per key with recv_filepath, the client's defaults
otherwise (throughput target, part size, connection count, no checksum).
The CRT cannot list, so the keys come from a file (one name per line,
relative to PREFIX), which the benchmark writes from the data set.

Usage: python awscrt_download.py NAMES_FILE ENDPOINT BUCKET PREFIX DIR
Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; region
us-east-1 (or AWS_DEFAULT_REGION). Exits 1 if any object failed.
"""

import os
import sys
from urllib.parse import quote

from awscrt.http import HttpHeaders, HttpRequest
from awscrt.s3 import S3RequestType

from awscrt_client import make_client


def main() -> int:
    names_file, endpoint, bucket, prefix, directory = sys.argv[1:6]
    client, host = make_client(endpoint)
    with open(names_file) as f:
        names = [line.rstrip("\n") for line in f if line.strip()]
    os.makedirs(directory, exist_ok=True)
    requests = []
    for name in names:
        path = "/" + quote(bucket) + "/" + quote(prefix + name, safe="/")
        request = HttpRequest("GET", path, HttpHeaders([("Host", host)]))
        requests.append(
            (
                name,
                client.make_request(
                    type=S3RequestType.GET_OBJECT,
                    request=request,
                    recv_filepath=os.path.join(directory, name),
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
                print(f"awscrt_download: {name}: {e!r}", file=sys.stderr)
    if failed:
        print(f"awscrt_download: {failed} of {len(requests)} failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
