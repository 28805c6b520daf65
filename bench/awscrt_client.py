"""The AWS CRT S3 client as both bench scripts make it (awscrt_upload.py,
awscrt_download.py): the client's defaults, credentials from
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, region us-east-1 (or
AWS_DEFAULT_REGION), plain HTTP or TLS by the endpoint's scheme, trusting
AWS_CA_BUNDLE when set (bench.py --tls).
"""

import os
from urllib.parse import urlsplit

from awscrt.auth import AwsCredentialsProvider
from awscrt.io import ClientTlsContext, TlsContextOptions
from awscrt.s3 import S3Client, S3RequestTlsMode, create_default_s3_signing_config


def make_client(endpoint: str) -> tuple[S3Client, str]:
    """The client for ENDPOINT (http://HOST:PORT or https://...) and the
    Host header its requests carry (the port is taken from it)."""
    url = urlsplit(endpoint)
    tls = url.scheme == "https"
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    credentials = AwsCredentialsProvider.new_static(
        os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    )
    tls_options = None
    if tls and os.environ.get("AWS_CA_BUNDLE"):
        opts = TlsContextOptions()
        opts.override_default_trust_store_from_path(ca_filepath=os.environ["AWS_CA_BUNDLE"])
        tls_options = ClientTlsContext(opts).new_connection_options()
    client = S3Client(
        region=region,
        tls_connection_options=tls_options,
        tls_mode=S3RequestTlsMode.ENABLED if tls else S3RequestTlsMode.DISABLED,
        signing_config=create_default_s3_signing_config(region=region, credential_provider=credentials),
    )
    return client, url.netloc
