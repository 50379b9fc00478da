"""Settings: every tunable is a field read from its variable, with a flag and a README line."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from admin import cli as admin_cli
from common.config import TUNABLE_VARS, Settings
from exporter import cli as exporter_cli

REPO = Path(__file__).resolve().parents[2]
# No flag: a password on a command line is visible to every user in `ps`; GRAFANA_HOME is
# Grafana's own variable, read for a system Grafana.
WITHOUT_FLAG = {"admin_password", "grafana_home"}


def _dests(parser) -> set[str]:
    return {action.dest for action in parser._actions}


def test_every_tunable_has_a_flag_and_a_readme_line():
    flags = _dests(exporter_cli.build_parser()) | _dests(admin_cli.build_parser())
    assert set(TUNABLE_VARS) - WITHOUT_FLAG - flags == set()
    readme = (REPO / "README.md").read_text()
    assert [var for var, _ in TUNABLE_VARS.values() if f"`{var}`" not in readme] == []


def test_fields_read_from_the_environment_and_flags_win(tmp_path):
    env = {"WORDSLAB_DASHBOARD_ROOT_PATH": "/host/root", "WORDSLAB_GRAFANA_URL": "http://g:3000",
           "WORDSLAB_PROMETHEUS_TARGETS_DIR": str(tmp_path / "t"), "WORDSLAB_VM_STATUS_INTERVAL_SECONDS": "0",
           "WORDSLAB_VM_PROVIDER_TIMEOUT_SECONDS": "2.5", "WORDSLAB_ENDPOINT_STATUS_INTERVAL_SECONDS": "30",
           "WORDSLAB_DASHBOARD_ADMIN_PASSWORD": "s3cret-pass", "HOME": str(tmp_path)}
    s = Settings.from_env(env)
    assert (s.root_path, s.grafana_url, s.prometheus_targets_dir) == (Path("/host/root"), "http://g:3000",
                                                                      tmp_path / "t")
    assert (s.vm_status_interval_seconds, s.vm_provider_timeout_seconds, s.endpoint_status_interval_seconds) \
        == (0.0, 2.5, 30.0)
    assert s.admin_password == "s3cret-pass" and "s3cret-pass" not in repr(s)
    assert (s.admin_url, s.prometheus_url) == ("http://127.0.0.1:9878", "http://127.0.0.1:9090")  # defaults

    exporter = exporter_cli.settings_from_args(exporter_cli.parse_args(
        ["--root-path", "/elsewhere", "--grafana-url", "http://flag:3000", "--workspace", str(tmp_path)]), env)
    assert (exporter.root_path, exporter.grafana_url, exporter.workspace) == (
        Path("/elsewhere"), "http://flag:3000", tmp_path)


def test_admin_flags_win_and_bad_seconds_are_refused(tmp_path, monkeypatch, capsys):
    args = admin_cli.parse_args(["--vm-status-interval", "5", "--endpoint-status-interval", "0",
                                 "--prometheus-targets-dir", str(tmp_path / "sd")])
    assert (args.vm_status_interval_seconds, args.endpoint_status_interval_seconds,
            args.prometheus_targets_dir) == (5.0, 0.0, tmp_path / "sd")
    for bad in ("-1", "soon", "nan"):
        with pytest.raises(SystemExit):
            admin_cli.parse_args(["--vm-provider-timeout", bad])
        assert "expected a number of seconds >= 0" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["soon", "-5", "nan"])
def test_an_unusable_variable_is_logged_and_the_default_kept(value, caplog):
    with caplog.at_level(logging.WARNING):
        s = Settings.from_env({"WORDSLAB_ENDPOINT_STATUS_INTERVAL_SECONDS": value})
    assert s.endpoint_status_interval_seconds is None
    assert f"WORDSLAB_ENDPOINT_STATUS_INTERVAL_SECONDS={value!r} is not a number >= 0" in caplog.text


@pytest.mark.parametrize("bad", ["0", "-1", "nan", "inf", "soon"])
def test_autostop_time_scale_must_be_a_positive_number(bad, capsys, caplog):
    """0 or a negative factor would make every running-hours limit due at once: every VM stopped."""
    with pytest.raises(SystemExit):
        admin_cli.parse_args(["--autostop-time-scale", bad])
    assert "expected a factor > 0" in capsys.readouterr().err
    with caplog.at_level(logging.WARNING):
        assert Settings.from_env({"WORDSLAB_AUTOSTOP_TIME_SCALE": bad}).autostop_time_scale == 1.0
    assert admin_cli.parse_args(["--autostop-time-scale", "0.1"]).autostop_time_scale == 0.1


def test_git_fetch_interval_from_its_variable_its_flag_or_the_default():
    env = {"WORDSLAB_GIT_FETCH_INTERVAL_SECONDS": "0"}
    from_env = exporter_cli.settings_from_args(exporter_cli.parse_args([]), env)
    from_flag = exporter_cli.settings_from_args(exporter_cli.parse_args(["--git-fetch-interval", "60"]), env)
    default = exporter_cli.settings_from_args(exporter_cli.parse_args([]), {})
    assert (from_env.git_fetch_interval_seconds, from_flag.git_fetch_interval_seconds,
            default.git_fetch_interval_seconds) == (0.0, 60.0, 1800.0)
