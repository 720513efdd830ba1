"""The API's error envelope, Stripe-like: {"error": {"type", "code", "message", "param"}}.

Every API answer is JSON, errors included; no HTML page ever leaves /api/.
"""

from django.http import JsonResponse


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = (
            status,
            message,
            type,
            code,
            param,
        )
        self.headers = headers or {}

    def response(self) -> JsonResponse:
        body = {
            "error": {
                "type": self.type,
                "code": self.code,
                "message": self.message,
                "param": self.param,
            }
        }
        response = JsonResponse(body, status=self.status)
        for name, value in self.headers.items():
            response[name] = value
        return response


def invalid(message: str, *, param: str | None = None, code: str = "parameter_invalid") -> ApiError:
    return ApiError(400, message, code=code, param=param)


def not_found(message: str = "No such invoice.") -> ApiError:
    return ApiError(404, message, code="resource_missing", param="id")
