"""A store on S3 read without credentials: one line naming the store and the ways to
give them, not botocore's NoCredentialsError traceback from inside request signing
(which comes before any request, so no server is needed)."""

from __future__ import annotations

import pytest

from medimg_build import open_store
from medimg_build.cli import main
from medimg_build.errors import StoreError

URL = "s3://no-such-bucket/ds.zarr"
NOWHERE = {"client_kwargs": {"endpoint_url": "http://127.0.0.1:9"}}


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_open_store_names_the_store_and_the_fix(no_credentials):
    with pytest.raises(StoreError, match="no S3 credentials") as raised:
        open_store(URL, storage_options=NOWHERE)
    assert URL in str(raised.value) and "AWS_ACCESS_KEY_ID" in str(raised.value)


@pytest.mark.parametrize("command", [["inspect"], ["verify"], ["export-table"]])
def test_commands_say_it_in_one_line(no_credentials, capsys, command):
    options = '{"client_kwargs": {"endpoint_url": "http://127.0.0.1:9"}}'
    assert main(command + [URL, "--storage-options", options]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no S3 credentials" in err and '"anon": true' in err
