"""A local S3 (and SQS) endpoint on 127.0.0.1, with S3 event notifications delivered to SQS.

:class:`LocalS3` runs moto's server mode (``ThreadedMotoServer``), which speaks the real
S3 and SQS HTTP APIs to boto3 and s3fs. S3 → Lambda notifications would need Docker in
moto, so events are routed S3 → SQS (which moto does emulate) and :meth:`LocalS3.poll_events`
hands them out as the ``{"Records": [...]}`` event that S3 sends to a Lambda function.

What moto 5.x does not emulate, measured against moto 5.2.5 (keep these in mind when a
local run passes):

* Event records lack ``userIdentity``, ``requestParameters``, ``responseElements``,
  ``s3.bucket.ownerIdentity`` and ``s3.object.sequencer``; :meth:`LocalS3.poll_events`
  fills them in (principals ``AWS:LOCAL``/``LOCAL``, source IP 127.0.0.1, random request
  ids, and a sequencer that increases per record). Versioned buckets' ``versionId`` is not added.
* moto announces a completed multipart upload twice, as ``ObjectCreated:Put`` and then
  ``ObjectCreated:CompleteMultipartUpload``; S3 sends only the latter.
  :meth:`LocalS3.poll_events` drops the extra ``Put`` (recognised by its multipart ETag,
  ``<md5>-<parts>``, which no single PUT produces).
* moto URL-encodes the whole key in a record, ``/`` included (``ingest%2Fa+b.json``);
  S3 keeps the slashes (``ingest/a+b.json``). :meth:`LocalS3.poll_events` re-encodes the
  key the S3 way; both decode to the same key with ``urllib.parse.unquote_plus``.
* Delivery is synchronous and exactly once, in order. Real S3 delivers asynchronously
  and at least once (duplicates and reordering happen), so handlers must be idempotent
  and compare ``sequencer`` values for the same key.
* PutBucketNotificationConfiguration does not check that the queue exists or that its
  policy lets S3 send to it (AWS rejects the configuration then), nor does it reject
  overlapping prefix/suffix filters for the same event type (AWS does). Failed
  deliveries are dropped silently.
* State is per process: every moto server started in one Python process (including
  several :class:`LocalS3` objects) serves the same buckets and queues.
* S3: a multipart Complete accepts parts out of order (AWS rejects), parts above 5 GiB
  are not refused, presigned URL signatures and expiry are not checked, and range GETs
  cost time proportional to the object size (see docs: keep test objects small).

What :class:`S3Server` adds in front of moto (:class:`ConditionalWrites`, a WSGI
middleware), because cubecut's consistency model relies on it and AWS S3 has it:

* ``If-Match`` on CompleteMultipartUpload (moto checks only ``If-None-Match: *``): 412
  PreconditionFailed when the key holds another version, 404 NoSuchKey when it holds none.
* Conditional writes are atomic: PutObject, CompleteMultipartUpload, CopyObject and
  DeleteObject of one server are serialised, so a check and its write cannot interleave
  with another write (moto checks, then writes, without a lock).
* ListMultipartUploads reports when each upload was initiated (moto reports 2010-11-10
  for every upload, which would make ``cubecut janitor`` abort running uploads).
* UploadPart to an upload that was aborted or completed answers 404 NoSuchUpload, as S3
  does (moto answers 500).
"""
from __future__ import annotations

import io
import itertools
import json
import logging
import re
import secrets
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, quote_plus, unquote_plus

import boto3
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from .serving import BackgroundServer

__all__ = ["LocalS3", "S3Server", "ConditionalWrites"]

_WSGIApp = Callable[[dict, Callable], Iterable[bytes]]
#: S3's refusals: ``(status, code, message, extra elements)``.
_PRECONDITION_FAILED = ("412 Precondition Failed", "PreconditionFailed",
                        "At least one of the pre-conditions you specified did not hold",
                        "<Condition>If-Match</Condition>")
_NO_SUCH_KEY = ("404 Not Found", "NoSuchKey", "The specified key does not exist.", "")
_NO_SUCH_UPLOAD = ("404 Not Found", "NoSuchUpload", "The specified upload does not exist.", "")
_UPLOAD_BLOCK = re.compile(rb"<Upload>.*?</Upload>", re.S)
_CREDENTIAL_SERVICE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/")


class ConditionalWrites:
    """WSGI middleware over moto's app giving S3 writes AWS's conditional semantics.

    See the module docstring for what it adds; every other request passes through.
    """

    def __init__(self, app: _WSGIApp) -> None:
        self.app = app
        self._write_lock = threading.Lock()
        self._initiated: dict[str, str] = {}  # upload id -> ISO time it was created
        self._completed: dict[str, str] = {}  # upload id -> ETag of the object it made

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        path = environ.get("PATH_INFO", "")
        is_object = _service(environ) == "s3" and path.strip("/").count("/") >= 1
        if not is_object:
            if _service(environ) == "s3" and method == "GET" and "uploads" in query:
                return self._list_uploads(environ, start_response)
            return self.app(environ, start_response)
        if method == "POST" and "uploads" in query:
            return self._create_upload(environ, start_response)
        if method == "PUT" and "partNumber" in query and "uploadId" in query:
            listed, _, _ = _call(self.app, {**_bare(environ), "REQUEST_METHOD": "GET",
                                            "QUERY_STRING": f"uploadId={query['uploadId'][0]}"})
            if listed.startswith("404"):
                return _refuse(start_response, _NO_SUCH_UPLOAD)
        writes = ((method == "PUT" and "partNumber" not in query and "tagging" not in query)
                  or (method == "POST" and "uploadId" in query) or (method == "DELETE" and "uploadId" not in query))
        if not writes:
            return self.app(environ, start_response)
        with self._write_lock:
            if method == "POST" and environ.get("HTTP_IF_MATCH"):
                refusal = self._check_complete(environ, query["uploadId"][0])
                if refusal is not None:
                    return _refuse(start_response, refusal)
            status, headers, body = _call(self.app, environ)
            if method == "POST" and status.startswith("200"):
                etag = re.search(rb"<ETag>([^<]+)</ETag>", body)
                if etag:
                    self._completed[query["uploadId"][0]] = etag.group(1).decode().replace("&#34;", "").strip('"')
        start_response(status, list(headers.items()))
        return [body]

    def _check_complete(self, environ: dict, upload_id: str) -> tuple[str, str, str, str] | None:
        """Why a CompleteMultipartUpload with ``If-Match`` must be refused, or None."""
        status, headers, _ = _call(self.app, {**_bare(environ), "REQUEST_METHOD": "HEAD"})
        if status.startswith("404"):
            return _NO_SUCH_KEY
        wanted = environ["HTTP_IF_MATCH"].strip().strip('"')
        etag = headers.get("etag", "").strip('"')
        if etag == wanted:
            return None
        # A retried Complete of the upload that made the current object succeeds, as on S3.
        if self._completed.get(upload_id) == etag:
            return None
        return _PRECONDITION_FAILED

    def _create_upload(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        status, headers, body = _call(self.app, environ)
        match = re.search(rb"<UploadId>([^<]+)</UploadId>", body)
        if match and status.startswith("200"):
            self._initiated[match.group(1).decode()] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        start_response(status, list(headers.items()))
        return [body]

    def _list_uploads(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        status, headers, body = _call(self.app, environ)

        def fix(match: re.Match) -> bytes:
            block = match.group(0)
            upload = re.search(rb"<UploadId>([^<]+)</UploadId>", block)
            when = self._initiated.get(upload.group(1).decode()) if upload else None
            return re.sub(rb"<Initiated>[^<]*</Initiated>", f"<Initiated>{when}</Initiated>".encode(), block) \
                if when else block

        body = _UPLOAD_BLOCK.sub(fix, body)
        headers["content-length"] = str(len(body))
        start_response(status, list(headers.items()))
        return [body]


def _refuse(start_response: Callable, refusal: tuple[str, str, str, str]) -> Iterable[bytes]:
    """Answer with S3's error document for ``refusal`` (see :data:`_NO_SUCH_KEY`)."""
    status, code, message, extra = refusal
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f'{extra}</Error>').encode()
    start_response(status, [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
    return [body]


def _service(environ: dict) -> str:
    """The AWS service a request is signed for (``s3`` when unsigned)."""
    auth = environ.get("HTTP_AUTHORIZATION", "") or unquote_plus(environ.get("QUERY_STRING", ""))
    match = _CREDENTIAL_SERVICE.search(auth)
    return match.group(1) if match else "s3"


def _bare(environ: dict) -> dict:
    """``environ`` for an internal request to the same path: no body, no conditions."""
    bare = {k: v for k, v in environ.items() if not k.startswith("HTTP_IF_")}
    bare.update({"QUERY_STRING": "", "CONTENT_LENGTH": "0", "wsgi.input": io.BytesIO(b"")})
    bare.pop("CONTENT_TYPE", None)
    return bare


def _call(app: _WSGIApp, environ: dict) -> tuple[str, dict[str, str], bytes]:
    """Run one request through ``app``: status, headers (lower-case names), body."""
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list, exc_info: Any = None) -> Callable:
        captured["status"], captured["headers"] = status, {k.lower(): v for k, v in headers}
        return lambda data: None

    body = b"".join(app(environ, start_response))
    return captured["status"], captured["headers"], body


class S3Server(BackgroundServer):
    """moto's server mode (S3, SQS, ...) behind :class:`ConditionalWrites`, serving from
    construction; ``port`` 0 picks a free port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = ConditionalWrites(DomainDispatcherApplication(create_backend_app))
        super().__init__(make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler),
                         "s3-server")


_DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class LocalS3(S3Server):
    """moto's S3/SQS server on ``host``:``port`` (0 picks a free port); started on creation.

    Clients from :meth:`client` use dummy credentials and ``region``; other code reaches
    the server through :attr:`endpoint` (e.g. ``AWS_ENDPOINT_URL``).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, region: str = "us-east-1") -> None:
        self.region = region
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log per request
        super().__init__(host, port)
        self._sequencer = itertools.count(1)
        self._lock = threading.Lock()

    def client(self, service: str = "s3") -> Any:
        """A boto3 client for ``service`` ("s3" or "sqs") bound to this server."""
        return boto3.client(service, endpoint_url=self.endpoint, region_name=self.region, **_DUMMY_CREDENTIALS)

    def create_bucket(self, name: str) -> str:
        """Create a bucket (in :attr:`region`) and return its name."""
        self.client("s3").create_bucket(Bucket=name)
        return name

    def enable_notifications(self, bucket: str, prefix: str = "", suffix: str = "") -> str:
        """Send ``s3:ObjectCreated:*`` events for keys with ``prefix``/``suffix`` to a new queue.

        The queue gets the policy AWS requires (S3 may send from this bucket only) and the
        rule is added to the bucket's existing notification configuration. Returns the
        queue URL for :meth:`poll_events`.
        """
        sqs, s3 = self.client("sqs"), self.client("s3")
        queue_url = sqs.create_queue(QueueName=f"{bucket}-events-{secrets.token_hex(4)}")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        policy = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sqs:SendMessage",
            "Resource": queue_arn, "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
        }]}
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
        rules = [{"Name": name, "Value": value} for name, value in (("prefix", prefix), ("suffix", suffix)) if value]
        queue_config: dict[str, Any] = {"Id": f"cubecut-{secrets.token_hex(4)}", "QueueArn": queue_arn,
                                        "Events": ["s3:ObjectCreated:*"]}
        if rules:
            queue_config["Filter"] = {"Key": {"FilterRules": rules}}
        config = s3.get_bucket_notification_configuration(Bucket=bucket)
        config.pop("ResponseMetadata", None)
        config.setdefault("QueueConfigurations", []).append(queue_config)
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)
        return queue_url

    def poll_events(self, queue_url: str, wait: float = 0.0) -> list[dict[str, Any]]:
        """Take the S3 events waiting on ``queue_url`` (waiting up to ``wait`` s for the first).

        Returns one ``{"Records": [...]}`` event per message, in the shape Lambda receives
        from S3, and deletes the messages. ``s3:TestEvent`` messages (sent when a
        notification configuration is saved, by AWS and moto alike) are dropped.
        """
        sqs = self.client("sqs")
        deadline = time.monotonic() + wait
        events: list[dict[str, Any]] = []
        while True:
            remaining = deadline - time.monotonic()
            response = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                           WaitTimeSeconds=max(0, min(20, int(remaining))) if not events else 0)
            messages = response.get("Messages", [])
            for message in messages:
                body = json.loads(message["Body"])
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                records = [self._complete(record) for record in body.get("Records", [])
                           if not _is_moto_duplicate(record)]
                if records:
                    events.append({"Records": records})
            if not messages:
                if events or time.monotonic() >= deadline:
                    return events
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def _complete(self, record: dict[str, Any]) -> dict[str, Any]:
        """Add the fields of a real S3 event record that moto leaves out."""
        with self._lock:
            sequence = next(self._sequencer)
        record.setdefault("userIdentity", {"principalId": "AWS:LOCAL"})
        record.setdefault("requestParameters", {"sourceIPAddress": "127.0.0.1"})
        record.setdefault("responseElements", {"x-amz-request-id": secrets.token_hex(8).upper(),
                                               "x-amz-id-2": secrets.token_urlsafe(48)})
        record["s3"]["bucket"].setdefault("ownerIdentity", {"principalId": "LOCAL"})
        s3_object = record["s3"]["object"]
        s3_object["key"] = quote_plus(unquote_plus(s3_object["key"]), safe="/")
        s3_object.setdefault("sequencer", f"{sequence:016X}")
        return record


def _is_moto_duplicate(record: dict[str, Any]) -> bool:
    """moto's extra ``ObjectCreated:Put`` record for a completed multipart upload."""
    return record.get("eventName") == "ObjectCreated:Put" and "-" in record["s3"]["object"].get("eTag", "")
