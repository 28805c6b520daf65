"""Starts moto's S3 server on 127.0.0.1 with authentication on, for tests.

moto accepts unsigned requests until INITIAL_NO_AUTH_ACTION_COUNT actions
have run; this script spends exactly those on creating an IAM user, its
access key and an allow-all policy, so every later request must be signed
with that key (a wrong secret gets SignatureDoesNotMatch). It prints one
JSON line {"endpoint", "access_key", "secret_key"} and serves until its
standard input closes, so the server dies with the test that started it.
"""

import json
import os
import sys

os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
# The test process may point AWS_CA_BUNDLE anywhere; this is plain http.
os.environ.pop("AWS_CA_BUNDLE", None)

import logging  # noqa: E402

import boto3  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
endpoint = f"http://127.0.0.1:{port}"

iam = boto3.client(
    "iam",
    endpoint_url=endpoint,
    aws_access_key_id="bootstrap",
    aws_secret_access_key="bootstrap",
    region_name="us-east-1",
)
iam.create_user(UserName="batchput")
key = iam.create_access_key(UserName="batchput")["AccessKey"]
iam.put_user_policy(
    UserName="batchput",
    PolicyName="all",
    PolicyDocument=json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
    ),
)

print(
    json.dumps(
        {
            "endpoint": endpoint,
            "access_key": key["AccessKeyId"],
            "secret_key": key["SecretAccessKey"],
        }
    ),
    flush=True,
)
sys.stdin.read()
server.stop()
