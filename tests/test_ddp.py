"""Training under torchrun with DistributedDataParallel: 2 CPU processes, gloo backend."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import pytest
import torch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args, cwd, timeout=240):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", *args]
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    import os

    env = {**os.environ, **env}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.ddp
def test_two_process_training_keeps_ranks_in_sync(tiny_files, tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(f"""
        import os, torch
        from napari_advseg.attack.config import AttackConfig
        from napari_advseg.data.cases import load_case
        from napari_advseg.models.target_load import load_target
        from napari_advseg.attack.distributed import shutdown_distributed
        from napari_advseg.attack.trainer import AttackTrainer
        target = load_target({str(tiny_files['target'])!r}, "cpu")
        case = load_case({str(tiny_files['ct'])!r}, {str(tiny_files['labels'])!r}, target.normalisation)
        cfg = AttackConfig(steps=3, batch_size=2, critic_steps=1, base_channels=4, critic_channels=4,
                           control_spacing=4, latent_dim=2)
        trainer = AttackTrainer(cfg, target, case.images, case.labels, "cpu")
        assert trainer.world_size == 2
        list(trainer.run(checkpoint_path={str(tmp_path / 'ckpt.pt')!r}))
        torch.save({{"generator": trainer.generator.state_dict(), "critic": trainer.critic.state_dict()}},
                   {str(tmp_path)!r} + f"/rank{{trainer.rank}}.pt")
        shutdown_distributed()
    """))
    result = _torchrun([str(script)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for part in ("generator", "critic"):
        for key, value in ranks[0][part].items():
            if value.dtype.is_floating_point:
                assert torch.allclose(value, ranks[1][part][key], atol=1e-6), f"{part}.{key} differs between ranks"
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert state["step"] == 3 and state["world_size"] == 2 and len(state["rng"]) == 2
    # the two ranks drew different batches (different random streams)
    assert not torch.equal(state["rng"][0], state["rng"][1])


@pytest.mark.ddp
def test_cli_train_under_torchrun(tiny_files, tmp_path):
    out = tmp_path / "run"
    result = _torchrun(["-m", "napari_advseg.cli", "train", "--ct", str(tiny_files["ct"]), "--labels",
                        str(tiny_files["labels"]), "--target", str(tiny_files["target"]), "--steps", "2",
                        "--batch-size", "2", "--critic-steps", "1", "--out", str(out), "--device", "cpu",
                        "--quiet"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("saved") == 1  # rank 0 alone reports and writes
    state = torch.load(out / "generator.pt", weights_only=True)
    assert state["step"] == 2 and state["world_size"] == 2


@pytest.mark.ddp
@pytest.mark.parametrize("configuration", ["2d", "3d_fullres"])
def test_cli_train_under_torchrun_with_an_nnunet_folder(tiny_files, tmp_path, configuration):
    pytest.importorskip("dynamic_network_architectures")
    from folder_helpers import write_nnunet_folder

    folder = write_nnunet_folder(tmp_path / "nnunet", configuration)
    out = tmp_path / "run"
    result = _torchrun(["-m", "napari_advseg.cli", "train", "--ct", str(tiny_files["ct"]), "--labels",
                        str(tiny_files["labels"]), "--target", str(folder), "--steps", "2", "--batch-size", "2",
                        "--critic-steps", "1", "--base-channels", "4", "--critic-channels", "4", "--out", str(out),
                        "--device", "cpu", "--quiet"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("saved") == 1
    state = torch.load(out / "generator.pt", weights_only=True)
    assert state["step"] == 2 and state["world_size"] == 2
    assert state["class_names"] == ["background", "liver", "spleen"]  # the folder's dataset.json
