"""svf-train refuses bad arguments before training, in one line, and shows its defaults."""

import pytest

from svf_deploy.cli import train_main


@pytest.mark.parametrize("args,code,words", [
    (["--epochs", "0"], 8, "--epochs must be >= 1, got 0"),
    (["--max-steps", "-1"], 8, "--max-steps must be >= 0"),
    (["--out", "model.txt"], 8, "must end in .pt or .pth"),
    (["--out", "{tmp}"], 7, "is a directory"),
    (["--out", "{tmp}/no/such/m.pt"], 7, "does not exist"),
])
def test_bad_arguments_fail_before_training(args, code, words, tmp_path, capsys):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert train_main(args + ["--quiet"]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("svf-train: error: ") and words in err[0]
    assert not list(tmp_path.iterdir())  # nothing written, nothing trained


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        train_main(["--help"])
    out = capsys.readouterr().out
    assert "(default: svf-tiny-digits.pt)" in out and "(default: 0)" in out
