"""The context object that AWS Lambda passes to a Python handler, for local invocations.

It carries every attribute of the real runtime's ``LambdaContext`` (awslambdaric) that
handlers and aws-lambda-powertools use. As in the real runtime, ``memory_limit_in_mb`` is
a string (it is read from an environment variable there).
"""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

#: The account and region that local ARNs are made with.
LOCAL_ACCOUNT_ID = "123456789012"
LOCAL_REGION = "us-east-1"


class LambdaContext:
    """One invocation's context; the deadline starts counting when the object is made."""

    def __init__(
        self,
        function_name: str,
        *,
        memory_mb: int = 128,
        timeout_seconds: float = 3.0,
        region: str = LOCAL_REGION,
        account_id: str = LOCAL_ACCOUNT_ID,
        invoked_function_arn: str | None = None,
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = invoked_function_arn or (
            f"arn:aws:lambda:{region}:{account_id}:function:{function_name}"
        )
        self.memory_limit_in_mb = str(memory_mb)
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        today = datetime.now(timezone.utc).strftime("%Y/%m/%d")
        self.log_stream_name = f"{today}/[$LATEST]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline = time.monotonic() + timeout_seconds

    @classmethod
    def for_arn(cls, arn: str, *, memory_mb: int = 128, timeout_seconds: float = 3.0) -> "LambdaContext":
        """A context for the function named by a Lambda ARN (``...:function:NAME[:QUALIFIER]``).

        ARNs that are not Lambda function ARNs (for example a Step Functions service
        integration) give a context whose function name is the ARN's last field.
        """
        parts = arn.split(":")
        if len(parts) >= 7 and parts[2] == "lambda" and parts[5] == "function":
            return cls(parts[6], memory_mb=memory_mb, timeout_seconds=timeout_seconds,
                       region=parts[3], account_id=parts[4], invoked_function_arn=arn)
        return cls(parts[-1] or arn, memory_mb=memory_mb, timeout_seconds=timeout_seconds,
                   invoked_function_arn=arn)

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the invocation's timeout (never negative)."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def __repr__(self) -> str:
        return f"LambdaContext(function_name={self.function_name!r}, aws_request_id={self.aws_request_id!r})"
