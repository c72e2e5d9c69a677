"""Mailchimp problem documents (RFC 7807 style errors) and their canonical texts.

Clients switch on ``title`` and show ``detail``, so both are copied from real
responses (Mailchimp's error glossary).  Every error the
emulator can produce is built here so the wording lives in one place.
"""

from __future__ import annotations

PROBLEM_TYPE = "https://mailchimp.com/developer/marketing/docs/errors/"
VALIDATION_DETAIL = ("The resource submitted could not be validated. "
                     "For field-specific details, see the 'errors' array.")


class ApiError(Exception):
    """An API failure that becomes a problem+json response (or a batch error item)."""

    def __init__(self, status: int, title: str, detail: str, errors: list | None = None,
                 headers: dict | None = None):
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}

    def document(self, instance: str) -> dict:
        doc = {"type": PROBLEM_TYPE, "title": self.title, "status": self.status,
               "detail": self.detail, "instance": instance}
        if self.errors is not None:
            doc["errors"] = self.errors
        return doc


def not_found() -> ApiError:
    return ApiError(404, "Resource Not Found", "The requested resource could not be found.")


def method_not_allowed(allow: str, detail: str | None = None) -> ApiError:
    return ApiError(405, "Method Not Allowed",
                    detail or "The requested method and resource are not compatible. "
                              "See the Allow header for this resource's available methods.",
                    headers={"Allow": allow})


def invalid_resource(errors: list, detail: str = VALIDATION_DETAIL) -> ApiError:
    return ApiError(400, "Invalid Resource", detail, errors=errors)


def field_error(field: str, message: str) -> ApiError:
    return invalid_resource([{"field": field, "message": message}])


def missing_fields(*names: str) -> ApiError:
    return invalid_resource([{"field": "", "message":
                              "Required fields were not provided: " + ", ".join(names)}])


def json_parse_error() -> ApiError:
    return ApiError(400, "JSON Parse Error", "We encountered an unspecified JSON parsing error.")


def bad_email_text() -> str:
    return "Please provide a valid email address."


def fake_email_text(email: str) -> str:
    return f"{email} looks fake or invalid, please enter a real email address."


def compliance_text(email: str) -> str:
    return (f"{email} is in a compliance state due to unsubscribe, bounce, or compliance "
            "review and cannot be subscribed.")


def forgotten_text(email: str) -> str:
    return (f"{email} was permanently deleted and cannot be re-imported. "
            "The contact must re-subscribe to get back on the list.")


def bad_email() -> ApiError:
    return ApiError(400, "Invalid Resource", bad_email_text())


def fake_email(email: str) -> ApiError:
    return ApiError(400, "Invalid Resource", fake_email_text(email))


def member_exists(email: str) -> ApiError:
    return ApiError(400, "Member Exists",
                    f"{email} is already a list member. Use PUT to insert or update list members.")


def compliance_state(email: str) -> ApiError:
    return ApiError(400, "Member In Compliance State", compliance_text(email))


def forgotten(email: str) -> ApiError:
    return ApiError(400, "Forgotten Email Not Subscribed", forgotten_text(email))


def cannot_archive() -> ApiError:
    return method_not_allowed("GET, PUT", "This list member cannot be removed. Can not archive "
                                          "a contact that is bounced, pending or archived")


def fields_invalid(names: list[str]) -> ApiError:
    return ApiError(422, "Requested Fields Invalid",
                    "The fields requested from this resource are invalid: " + ", ".join(names))


def api_key_missing() -> ApiError:
    return ApiError(401, "API Key Missing", "Your request did not include an API key.")


def api_key_invalid() -> ApiError:
    return ApiError(401, "API Key Invalid", "Your API key may be invalid, or you've attempted "
                                            "to access the wrong datacenter.")


def wrong_datacenter() -> ApiError:
    return ApiError(403, "Wrong Datacenter",
                    "The API key provided is linked to a different datacenter")


def too_many_requests(limit: int) -> ApiError:
    return ApiError(429, "Too Many Requests",
                    f"You have exceeded the limit of {limit} simultaneous connections.")


def internal_error() -> ApiError:
    return ApiError(500, "Internal Server Error", "An unexpected internal error has occurred. "
                                                  "Please contact Support for more information.")


def service_unavailable() -> ApiError:
    return ApiError(503, "Service Unavailable", "The service is temporarily unavailable. "
                                                "Please try again later.")
