"""OpenAI's error shape and response headers, as the real API sends them, so that the official
SDK raises the same exception classes against the simulator as against api.openai.com.

Every error is `{"error": {"message", "type", "param", "code"}}` (the last two may be null);
every response, success or failure, carries `x-request-id` and the `x-ratelimit-*` headers a
client uses to pace itself.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from capstan.testing.simulator.ids import HEX, random_id
from capstan.testing.simulator.state import InjectedFailure

REQUEST_LIMIT = 10_000
TOKEN_LIMIT = 30_000_000


class OpenAIError(Exception):
    """A failure to answer with OpenAI's error body; raised anywhere while handling a call and
    turned into a response in one place."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self, headers: dict[str, str]) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=headers | self.headers)


def response_headers() -> dict[str, str]:
    """The headers OpenAI puts on every answer (rate-limit state as if the quota were ample)."""
    return {
        "x-request-id": "req_" + random_id(32, HEX),
        "openai-version": "2020-10-01",
        "openai-processing-ms": "1",
        "x-ratelimit-limit-requests": str(REQUEST_LIMIT),
        "x-ratelimit-remaining-requests": str(REQUEST_LIMIT - 1),
        "x-ratelimit-reset-requests": "6ms",
        "x-ratelimit-limit-tokens": str(TOKEN_LIMIT),
        "x-ratelimit-remaining-tokens": str(TOKEN_LIMIT - 1),
        "x-ratelimit-reset-tokens": "0s",
    }


def duration(seconds: float) -> str:
    """OpenAI's reset-time format: `1s`, `6m0s`, `250ms`."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    rest_text = f"{rest:g}s"
    return f"{int(minutes)}m{rest_text}" if minutes else rest_text


def fault_error(failure: InjectedFailure) -> OpenAIError:
    """The error OpenAI returns with the failure's status, for an injected fault."""
    status = failure.status
    if status == 429:
        return OpenAIError(
            429,
            "Rate limit reached for requests. Please try again later.",
            type="requests",
            code="rate_limit_exceeded",
            headers={
                "retry-after": f"{failure.retry_after_s:g}",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": duration(failure.retry_after_s),
            },
        )
    if status == 503:
        return OpenAIError(
            503,
            "The engine is currently overloaded, please try again later.",
            type="server_error",
        )
    if status >= 500:
        return OpenAIError(
            status,
            "The server had an error while processing your request. Sorry about that!",
            type="server_error",
        )
    if status == 401:
        return OpenAIError(401, "Incorrect API key provided.", code="invalid_api_key")
    if status == 403:
        return OpenAIError(
            403, "You are not allowed to use this model.", code="unsupported_country_region"
        )
    return OpenAIError(status, f"The request failed with status {status}.")


def invalid_api_key(credential: str | None) -> OpenAIError:
    if credential is None:
        return OpenAIError(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            code="invalid_api_key",
        )
    shown = credential[:3] + "*" * 4 + credential[-4:] if len(credential) > 8 else credential
    return OpenAIError(
        401,
        f"Incorrect API key provided: {shown}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        code="invalid_api_key",
    )


def model_not_found(model: str) -> OpenAIError:
    return OpenAIError(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        code="model_not_found",
    )


def context_length_exceeded(window: int, tokens: int) -> OpenAIError:
    return OpenAIError(
        400,
        f"This model's maximum context length is {window} tokens. However, your messages "
        f"resulted in {tokens} tokens. Please reduce the length of the messages.",
        param="messages",
        code="context_length_exceeded",
    )


def content_policy_violation() -> OpenAIError:
    return OpenAIError(
        400,
        "Your request was rejected as a result of our safety system. Your prompt may contain "
        "text that is not allowed by our safety system.",
        code="content_policy_violation",
    )


def not_json() -> OpenAIError:
    return OpenAIError(
        400,
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
        "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
        "sent was not valid JSON.",
    )


def missing(param: str) -> OpenAIError:
    return OpenAIError(
        400,
        f"Missing required parameter: '{param}'.",
        param=param,
        code="missing_required_parameter",
    )


def invalid_type(param: str, expected: str, value: Any) -> OpenAIError:
    return OpenAIError(
        400,
        f"Invalid type for '{param}': expected {expected}, but got {json_kind(value)} instead.",
        param=param,
        code="invalid_type",
    )


def invalid_value(param: str, value: Any, supported: tuple[str, ...]) -> OpenAIError:
    options = ", ".join(f"'{option}'" for option in supported[:-1])
    listed = f"{options}, and '{supported[-1]}'" if len(supported) > 1 else f"'{supported[0]}'"
    return OpenAIError(
        400,
        f"Invalid value: '{value}'. Supported values are: {listed}.",
        param=param,
        code="invalid_value",
    )


def json_kind(value: Any) -> str:
    """How OpenAI names a JSON value's type in its messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
