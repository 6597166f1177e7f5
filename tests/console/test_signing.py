from __future__ import annotations

from autoexec.console.signing import api_uri, auth_headers, encode_body, sign_content, signature, verify

TOKEN = "499922b4317c251c2ce525f7b83e3d94"


def test_worked_example_post() -> None:
    body = encode_body({"jobId": "1"})
    assert body == b'{"jobId": "1"}'
    uri = "/neatlogic/api/rest/autoexec/job/status/get"
    assert sign_content("autoexec", uri, body) == \
        "autoexec#/neatlogic/api/rest/autoexec/job/status/get#eyJqb2JJZCI6ICIxIn0="
    assert signature("autoexec", TOKEN, uri, body) == \
        "7d882d87bb81fa326d2130d610a38dea92897a09e9b2adbb812bf07a84b62816"


def test_worked_example_get_signs_query_and_empty_body() -> None:
    uri = api_uri("/neatlogic/api/binary/file/download", {"id": 1, "lastModified": 0})
    assert uri == "/neatlogic/api/binary/file/download?id=1&lastModified=0"
    assert sign_content("autoexec", uri, None) == f"autoexec#{uri}#"
    headers = auth_headers("autoexec", TOKEN, "develop", uri, None)
    assert headers == {
        "Tenant": "develop", "AuthType": "hmac", "x-access-key": "autoexec",
        "Authorization": "Hmac 6c3e778fe8ff8a3f54833d22f791e543d235ea4aaca22db34b339468a12fb27b",
    }


def test_leading_slash_added_and_python_repr_query_quirk() -> None:
    uri = api_uri("neatlogic/api/x", {"passThroughEnv": {"runnerId": 1}, "operationId": None})
    assert uri == "/neatlogic/api/x?passThroughEnv=%7B%27runnerId%27%3A+1%7D&operationId=None"


def test_non_ascii_body_is_utf8_and_kept() -> None:
    assert encode_body({"name": "倒计时"}) == '{"name": "倒计时"}'.encode("utf-8")


def test_verify_accepts_uppercase_and_rejects_tampering() -> None:
    uri, body = "/p", b'{"a": 1}'
    good = signature("u", TOKEN, uri, body)
    assert verify("u", TOKEN, uri, body, "Hmac " + good.upper())
    assert not verify("u", TOKEN, uri, b'{"a": 2}', "Hmac " + good)
    assert not verify("u", "other", uri, body, "Hmac " + good)
    assert not verify("u", TOKEN, uri, body, "Bearer " + good)
