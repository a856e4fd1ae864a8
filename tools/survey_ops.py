"""Survey: PyTorch's OpInfo database on the mpsgraph device vs the CPU.

For every op in torch.testing._internal.common_methods_invocations.op_db that
supports float32 on the CPU, the first `--samples` float32 sample inputs run on
the CPU and on the mpsgraph device (same RNG seed), each op in a forked child
so that a crash is counted, not fatal. An op is

  consistent  every sample agrees with the CPU (values, dtype, shape; both
              raising counts as agreeing)
  mismatch    some sample differs
  error       the device raised where the CPU did not
  crash       the child died (signal) or timed out

and native when its samples ran without the CPU fallback
(torch.ops.mps_ext._fallback_count() unchanged).

    python tools/survey_ops.py                 # whole database (a few minutes on 2 cores)
    python tools/survey_ops.py --ops add,mul -v
    python tools/survey_ops.py --json benchmarks/results/survey_ops.json
"""
import argparse
import json
import os
import pickle
import signal
import sys
import time
import warnings

os.environ.setdefault("MPS_EXT_FALLBACK", "silent")  # fallbacks are counted, not warned about

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import mps_ext  # noqa: E402,F401

DEV = "mpsgraph"


def to_dev(v):
    if isinstance(v, torch.Tensor):
        t = v.detach().to(DEV)
        return t.requires_grad_(v.requires_grad) if v.is_leaf and v.requires_grad else t
    if isinstance(v, (list, tuple)):
        return type(v)(to_dev(e) for e in v)
    if isinstance(v, dict):
        return {k: to_dev(e) for k, e in v.items()}
    if isinstance(v, torch.device) and v.type == "cpu":
        return torch.device(DEV)
    if isinstance(v, str) and v == "cpu":
        return DEV
    return v


# Uninitialized memory: only sizes and dtypes are comparable.
UNINITIALIZED = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "empty_permuted"}


def compare(dev, cpu, values=True):
    """None when equal, else a short reason."""
    if isinstance(cpu, torch.Tensor):
        if not isinstance(dev, torch.Tensor):
            return f"type {type(dev).__name__}"
        if not values:
            return None if (dev.shape, dev.dtype) == (cpu.shape, cpu.dtype) else "shape/dtype"
        if dev.device.type != DEV and cpu.device.type == "cpu" and dev.device.type != "cpu":
            return f"device {dev.device}"
        try:
            torch.testing.assert_close(dev.detach().cpu(), cpu.detach(), equal_nan=True, check_device=False,
                                       check_layout=False, atol=1e-5, rtol=1.3e-6)
        except AssertionError as e:
            return str(e).splitlines()[0][:200]
        return None
    if isinstance(cpu, (list, tuple)):
        if not isinstance(dev, (list, tuple)) or len(dev) != len(cpu):
            return "structure"
        for d, c in zip(dev, cpu):
            r = compare(d, c, values)
            if r:
                return r
        return None
    if isinstance(cpu, float) and isinstance(dev, float):
        return None if (cpu == dev or abs(cpu - dev) <= 1e-5 + 1e-5 * abs(cpu) or (cpu != cpu and dev != dev)) else "value"
    try:
        return None if dev == cpu else "value"
    except Exception:  # noqa: BLE001
        return None


def run_op(op, samples):
    """In the child: returns (status, native, detail)."""
    warnings.simplefilter("ignore")
    status, detail = "consistent", ""
    before = torch.ops.mps_ext._fallback_count()
    try:
        gen = op.sample_inputs("cpu", torch.float32, requires_grad=False)
    except Exception as e:  # noqa: BLE001
        return "skip", True, f"no samples: {e}"
    n = 0
    for sample in gen:
        if n >= samples:
            break
        n += 1
        torch.manual_seed(0)
        try:
            expected = op(sample.input, *sample.args, **sample.kwargs)
            cpu_error = None
        except Exception as e:  # noqa: BLE001
            expected, cpu_error = None, e
        args = to_dev((sample.input, sample.args, sample.kwargs))
        torch.manual_seed(0)
        try:
            got = op(args[0], *args[1], **args[2])
        except Exception as e:  # noqa: BLE001
            if cpu_error is None:
                status, detail = "error", f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            continue
        if cpu_error is not None:
            status, detail = "mismatch", f"CPU raised {type(cpu_error).__name__}, device did not"
            continue
        r = compare(got, expected, op.name not in UNINITIALIZED)
        if r and status == "consistent":
            status, detail = "mismatch", r
    if n == 0:
        return "skip", True, "no float32 samples"
    native = torch.ops.mps_ext._fallback_count() == before
    return status, native, detail


def survey(ops, samples, timeout, verbose):
    results = {}
    for op in ops:
        name = op.name + (f".{op.variant_test_name}" if op.variant_test_name else "")
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            os.close(r)
            torch.set_num_threads(1)  # the parent's thread pools do not survive fork()
            import faulthandler; faulthandler.enable()
            try:
                res = run_op(op, samples)
            except BaseException as e:  # noqa: BLE001
                res = ("error", False, f"harness: {e}")
            os.write(w, pickle.dumps(res))
            os._exit(0)
        os.close(w)
        deadline = time.time() + timeout
        data = b""
        status = None
        while True:
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.time() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                status = ("crash", False, "timeout")
                break
            time.sleep(0.005)
        with os.fdopen(r, "rb") as f:
            data = f.read()
        if status is None:
            status = pickle.loads(data) if data else ("crash", False, f"child exit status {code}")
        results[name] = status
        if verbose:
            print(f"{name:40s} {status[0]:10s} {'native' if status[1] else 'fallback':8s} {status[2]}", flush=True)
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ops", help="comma-separated op names (default: the whole database)")
    p.add_argument("--samples", type=int, default=3, help="first N float32 samples per op")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per op before it counts as a crash")
    p.add_argument("--json", help="write the per-op results here")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args()
    from torch.testing._internal.common_methods_invocations import op_db

    ops = [op for op in op_db if torch.float32 in op.supported_dtypes("cpu")]
    if a.ops:
        wanted = set(a.ops.split(","))
        ops = [op for op in ops if op.name in wanted]
    t0 = time.time()
    res = survey(ops, a.samples, a.timeout, a.verbose)
    counted = {k: v for k, v in res.items() if v[0] != "skip"}
    total = len(counted)
    count = {s: sum(1 for v in counted.values() if v[0] == s) for s in ("consistent", "mismatch", "error", "crash")}
    native = sum(1 for v in counted.values() if v[1] and v[0] != "crash")
    print(f"mps_ext {DEV} device ({mps_ext.runtime()} runtime) vs CPU over op_db, float32, first {a.samples} samples, "
          f"torch {torch.__version__}, {time.time() - t0:.0f} s")
    print(f"ops: {total}  consistent: {count['consistent']} ({100 * count['consistent'] / max(total, 1):.1f}%)  "
          f"mismatch: {count['mismatch']}  error: {count['error']}  crash: {count['crash']}  "
          f"native: {native} ({100 * native / max(total, 1):.1f}%)")
    for s in ("mismatch", "error", "crash"):
        names = sorted(k for k, v in counted.items() if v[0] == s)
        if names:
            print(f"{s}: " + ", ".join(f"{k} [{counted[k][2][:80]}]" for k in names))
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump({"summary": dict(count, total=total, native=native), "ops": res}, f, indent=1)


if __name__ == "__main__":
    main()
