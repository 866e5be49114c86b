"""A refused ``analyze`` or ``compare`` leaves nothing in a fresh ``--out`` (issue 38, item 5), wherever the
refusal comes from: the preset, the data, the model's parts (built in the sweep's workers) or the objectives;
and a directory a refused study did start is no obstacle to the corrected command."""

import pytest

from pyro_vae.analyses import common
from pyro_vae.cli import main

REFUSED = [
    (["compare", "--quick", "--prior", "nosuch"], "unknown prior 'nosuch'"),  # refused in a worker process
    (["compare", "--quick", "--executor", "serial", "--guide", "nosuch"], "unknown guide 'nosuch'"),
    (["compare", "--quick", "--executor", "serial", "--likelihood", "nosuch"], "unknown likelihood 'nosuch'"),
    (["compare", "--quick", "--executor", "serial", "--objectives", "nosuch"], "unknown objective 'nosuch'"),
    (["compare", "--quick", "--device", "meta"], "device 'meta' holds no data"),
    (["compare", "--quick", "--executor", "nosuch"], "unknown executor 'nosuch'; expected one of: serial, local, ray"),
    (["compare", "--quick", "--data", "mnist"], "mnist needs a data directory"),
    (["compare", "--quick", "--model", "tests/pairs/robust_fa.py:nothing"], "no callable 'nothing'"),
    (["analyze", "collapse", "--quick", "--data", "nosuch"], "unknown data set 'nosuch'"),
    (["analyze", "guides", "--quick", "--data", "nosuch"], "unknown data set 'nosuch'"),
]


@pytest.mark.parametrize("argv, said", REFUSED, ids=[" ".join(argv[2:]) for argv, _ in REFUSED])
def test_a_refused_study_leaves_no_trace_in_a_fresh_out(argv, said, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYRO_VAE_DATA_DIR", "")
    out = tmp_path / "study"
    try:
        code = main([*argv, "--no-progress", "--out", str(out)])
    except SystemExit as refused:  # a value its flag's check refuses while the command line is read
        code = refused.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and said in err[0], err
    assert not out.exists()


def test_a_study_refused_after_it_started_does_not_block_the_corrected_one(tmp_path):
    out = tmp_path / "study"
    common.start(out, "compare", {"prior": "nosuch"})  # what a study refused in its workers had written
    (out / "fits" / "elbo=1,seed=0").mkdir(parents=True)
    (out / "fits" / "elbo=1,seed=0" / "task.json").write_text("{}")
    common.release(out)
    assert common.unstarted(out)
    common.start(out, "compare", {"prior": "normal"})  # accepted: nothing had been done
    common.release(out)
    (out / "fits" / "elbo=1,seed=0" / "result.json").write_text("{}")  # a finished fit is work: now it counts
    assert not common.unstarted(out)
    with pytest.raises(common.RunDirError, match="started with other options"):
        common.start(out, "compare", {"prior": "laplace"})
