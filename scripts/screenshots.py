"""Refresh the README screenshots from a real (tiny) PyTorch sweep.

Usage: .venv/bin/python scripts/screenshots.py [--out docs] [--keep]

Starts ``trainvis serve`` on a throwaway SQLite file, trains three small MLPs
on a synthetic classification task with different learning rates (real
autograd, real optimizers, per-layer gradient norms), logs them through the
SDK, then drives Debian's Chromium to capture the runs table, a job page and
the compare page at 1440 px, 390 px and in dark mode.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

API = "/api/v1/visualization"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(db: Path, port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [sys.executable, "-m", "trainvis", "serve", "--db", str(db), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/openapi.json").status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not start")


def train(url: str, lr: float, optimizer: str, seed: int, steps: int) -> str:
    """One real training run of a small MLP; returns its job id."""
    import torch
    from torch import nn

    import trainvis

    torch.manual_seed(seed)
    features, classes, width = 32, 10, 64
    centers = torch.randn(classes, features) * 0.6
    labels = torch.randint(0, classes, (4096,))
    inputs = centers[labels] + torch.randn(4096, features) * 1.5
    val_labels = torch.randint(0, classes, (1024,))
    val_inputs = centers[val_labels] + torch.randn(1024, features) * 1.5
    model = nn.Sequential(
        nn.Linear(features, width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Linear(width, classes),
    )
    opt_cls = torch.optim.AdamW if optimizer == "AdamW" else torch.optim.SGD
    opt = opt_cls(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    run = trainvis.init(
        name=f"mlp-{optimizer.lower()}-lr{lr:g}",
        model_name="mlp-4x64",
        total_steps=steps,
        total_epochs=steps // 64,
        config={"optimizer": optimizer, "lr": lr, "batch_size": 64, "width": width, "seed": seed},
        tags=["sweep", optimizer.lower()],
        url=url,
        monitor_system=False,
        monitor_gpu=False,
    )
    started = time.perf_counter()
    for step in range(1, steps + 1):
        index = torch.randint(0, inputs.shape[0], (64,))
        loss = loss_fn(model(inputs[index]), labels[index])
        opt.zero_grad()
        loss.backward()
        row: dict[str, float] = {"train_loss": loss.item(), "learning_rate": sched.get_last_lr()[0]}
        for name, param in model.named_parameters():
            if param.grad is not None:
                row[f"layers/{name}/grad_norm"] = float(param.grad.norm())
        opt.step()
        sched.step()
        row["perf/samples_per_sec"] = 64 * step / max(time.perf_counter() - started, 1e-6)
        if step % 25 == 0:
            with torch.no_grad():
                logits = model(val_inputs)
                row["val_loss"] = float(loss_fn(logits, val_labels))
                row["val/accuracy"] = float((logits.argmax(1) == val_labels).float().mean())
        run.log(row, step=step, epoch=step / 64)
    run.finish(status="completed")
    return run.id


def shoot(base: str, job_ids: list[str], out: Path) -> None:
    from playwright.sync_api import sync_playwright

    runs_columns = [
        "status",
        "progress",
        "config.optimizer",
        "config.lr",
        "metric.val_loss.best",
        "metric.val/accuracy.max",
        "spark",
        "tags",
        "duration",
    ]
    runs_query = "&".join(f"col={column}" for column in runs_columns)
    pages = {
        "runs": f"{base}{API}/dashboard?sort=metric.val_loss.best&{runs_query}",
        "job": f"{base}{API}/dashboard/job/{job_ids[0]}",
        "compare": (
            f"{base}{API}/dashboard/compare?jobs={','.join(job_ids)}"
            f"&smoothing=0.6&baseline={job_ids[0]}"
        ),
    }
    views = [("", 1440, 1000, "light"), ("-390", 390, 844, "light"), ("-dark", 1440, 1000, "dark")]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for suffix, width, height, scheme in views:
            context = browser.new_context(
                viewport={"width": width, "height": height}, color_scheme=scheme
            )
            page = context.new_page()
            for name, url in pages.items():
                page.goto(url)
                page.wait_for_load_state("networkidle")
                time.sleep(1.5)  # chart animations and lazily drawn panels
                path = out / f"screenshot-{name}{suffix}.png"
                page.screenshot(path=str(path), full_page=name != "job" or width < 800)
                print(path)
                if name == "job" and width >= 800:
                    # The metric panels below the overview, drawn as they scroll into view.
                    page.locator("#metrics").scroll_into_view_if_needed()
                    page.evaluate("document.getElementById('metrics').scrollIntoView()")
                    page.wait_for_load_state("networkidle")
                    time.sleep(1.5)
                    path = out / f"screenshot-panels{suffix}.png"
                    page.screenshot(path=str(path))
                    print(path)
            context.close()
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--keep", action="store_true", help="leave the server running")
    args = parser.parse_args()
    if not os.path.exists(CHROMIUM):
        raise SystemExit(f"{CHROMIUM} not found (apt-get install chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="trainvis-shots-"))
    port = free_port()
    server = start_server(workdir / "shots.db", port)
    base = f"http://127.0.0.1:{port}"
    try:
        sweep = [(3e-3, "AdamW", 1), (1e-2, "AdamW", 2), (0.1, "SGD", 3)]
        job_ids = [train(base, lr, opt, seed, args.steps) for lr, opt, seed in sweep]
        shoot(base, job_ids, args.out)
        if args.keep:
            print(f"server still running at {base}{API}/dashboard (pid {server.pid})")
            return
    finally:
        if not args.keep:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
