"""Local S3 for the benchmarks: s3rver (npm, filesystem backend) + the shaping proxy.

Large cubes are put into s3rver's store by hard-linking the local file into its folder
layout (``{root}/{bucket}/{dirs}/{name}._S3rver_object`` + ``.md5``): the object is then
served by s3rver exactly as an uploaded one, without copying gigabytes through HTTP.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
NODE_DIR = WORK / "node"
STORE = WORK / "s3store"
BUCKETS = ("stpubdata", "cubecut-bench")
REGION = "us-east-1"


def ensure_s3rver() -> Path:
    modules = NODE_DIR / "node_modules"
    if not (modules / "s3rver").exists():
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copy(HERE / "package.json", NODE_DIR / "package.json")
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR, check=True)
    return modules


def _start(cmd: list[str], env: dict | None = None) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{cmd[0]} did not start")
    return proc, json.loads(line)


class S3rver:
    def __init__(self, store: Path = STORE) -> None:
        modules = ensure_s3rver()
        store.mkdir(parents=True, exist_ok=True)
        self.store = store
        env = dict(os.environ, S3RVER_MODULES=str(modules))
        self.proc, info = _start(["node", str(HERE / "s3rver_main.js"), str(store), "0", *BUCKETS], env)
        self.port = info["port"]
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def object_path(self, bucket: str, key: str) -> Path:
        *dirs, name = key.split("/")
        return self.store.joinpath(bucket, *dirs, f"{name}._S3rver_object")

    def place(self, bucket: str, key: str, source: Path, etag_hint: str | None = None) -> str:
        """Serve local file ``source`` as ``s3://bucket/key`` (hard link, no copy); its ETag."""
        target = self.object_path(bucket, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.unlink()
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        st = source.stat()
        md5 = hashlib.md5(f"{etag_hint or key}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
        Path(f"{target}.md5").write_text(md5)
        meta = target.with_name(target.name.replace("._S3rver_object", "._S3rver_metadata.json"))
        meta.write_text(json.dumps({"content-type": "application/octet-stream"}))
        return f'"{md5}"'

    def put_bytes(self, bucket: str, key: str, data: bytes) -> None:
        target = self.object_path(bucket, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        Path(f"{target}.md5").write_text(hashlib.md5(data).hexdigest())
        meta = target.with_name(target.name.replace("._S3rver_object", "._S3rver_metadata.json"))
        meta.write_text(json.dumps({"content-type": "application/octet-stream"}))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Shaper:
    """The proxy in its own process; ``endpoint`` is what clients use."""

    def __init__(self, upstream_port: int, latency_ms: float = 0.0, mbps: float = 0.0) -> None:
        self.latency_ms, self.mbps = latency_ms, mbps
        self.proc, info = _start([sys.executable, str(HERE / "shaper.py"), "--upstream",
                                  f"127.0.0.1:{upstream_port}", "--latency-ms", str(latency_ms),
                                  "--mbps", str(mbps)])
        self.port, self.control = info["port"], info["control"]
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.control}/stats", timeout=10) as r:
            return json.loads(r.read())

    def reset(self) -> None:
        urllib.request.urlopen(f"http://127.0.0.1:{self.control}/reset", timeout=10).read()

    @property
    def label(self) -> str:
        if not self.latency_ms and not self.mbps:
            return "0 ms"
        return f"{self.latency_ms:g} ms, {self.mbps:g} MB/s/conn"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def s3_env(endpoint: str) -> dict[str, str]:
    """Environment for a contender subprocess talking to ``endpoint``."""
    env = dict(os.environ)
    env.update({
        "AWS_ENDPOINT_URL": endpoint, "AWS_ENDPOINT_URL_S3": endpoint,
        "FSSPEC_S3_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "S3RVER", "AWS_SECRET_ACCESS_KEY": "S3RVER",
        "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    })
    env.pop("AWS_PROFILE", None)
    return env


# ---------------------------------------------------------------- moto vs s3rver range GETs

def range_get_scaling(sizes_mb=(8, 64, 256, 1024), repeats: int = 5, range_bytes: int = 256 * 1024) -> dict:
    """Latency of one small range GET vs object size, on moto (server mode) and s3rver."""
    import boto3
    from botocore.config import Config
    from moto.server import ThreadedMotoServer

    rows = []
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    moto_port = moto._server.server_port
    s3r = S3rver(WORK / "s3store-scaling")
    try:
        for name, endpoint in (("moto", f"http://127.0.0.1:{moto_port}"), ("s3rver", s3r.endpoint)):
            client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                                  aws_access_key_id="S3RVER", aws_secret_access_key="S3RVER",
                                  config=Config(s3={"addressing_style": "path"}))
            bucket = "scaling"
            try:
                client.create_bucket(Bucket=bucket)
            except Exception:
                pass
            for mb in sizes_mb:
                key = f"obj-{mb}"
                body = os.urandom(1024 * 1024) * mb
                client.put_object(Bucket=bucket, Key=key, Body=body)
                del body
                times = []
                for i in range(repeats):
                    start = (i * 7919 * range_bytes) % (mb * 1024 * 1024 - range_bytes)
                    t0 = time.perf_counter()
                    got = client.get_object(Bucket=bucket, Key=key,
                                            Range=f"bytes={start}-{start + range_bytes - 1}")["Body"].read()
                    times.append(time.perf_counter() - t0)
                    assert len(got) == range_bytes
                client.delete_object(Bucket=bucket, Key=key)
                times.sort()
                rows.append({"server": name, "object_mb": mb, "range_kb": range_bytes // 1024,
                             "median_ms": 1000 * times[len(times) // 2], "min_ms": 1000 * times[0]})
                print(f"  {name:7s} {mb:5d} MB object: range GET {rows[-1]['median_ms']:.1f} ms", flush=True)
    finally:
        moto.stop()
        s3r.stop()
        shutil.rmtree(WORK / "s3store-scaling", ignore_errors=True)
    return {"rows": rows}
