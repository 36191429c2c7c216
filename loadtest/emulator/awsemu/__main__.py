"""Owns the emulator's command line: ``python -m awsemu [--port 0 --port-file PATH ...]`` (with loadtest/emulator on PYTHONPATH)."""

from __future__ import annotations

import argparse
import sys

from awsemu.emulator import SERVICE_CLASSES, EmulatorHTTPServer, build_emulator
from awsemu.server import add_server_arguments, serve
from awsemu.throttle import parse_rate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m awsemu",
                                 description="Local emulator of AWS APIs missing from moto (Security Hub, Detective).")
    add_server_arguments(ap, "--host", "--port")
    ap.add_argument("--no-throttle", action="store_true", help="disable per-operation token buckets")
    ap.add_argument("--udf-mode", choices=("replace", "merge"), default="replace",
                    help="BatchUpdateFindings UserDefinedFields: replace the map (default) or merge into it")
    ap.add_argument("--latency-ms", type=float, default=0.0, help="sleep this long before handling each AWS call")
    ap.add_argument("--rate", action="append", default=[], metavar="OP=RPS:BURST", help="override an operation's rate limit (repeatable)")
    ap.add_argument("--investigation-delay-ms", type=float, default=2000.0,
                    help="Detective investigations stay RUNNING this long, then SUCCESSFUL or FAILED (default 2000)")
    ap.add_argument("--investigation-failure-rate", type=float, default=0.0, metavar="F",
                    help="probability (0..1) that a Detective investigation FAILS (default 0; see --seed)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random failures (default 0; re-applied on reset)")
    ap.add_argument("--iam-policies-from", metavar="URL",
                    help="serve IAM SimulatePrincipalPolicy, reading the roles' policies from moto's IAM at URL")
    args = ap.parse_args(argv)
    if not (0.0 <= args.investigation_failure_rate <= 1.0):
        ap.error("--investigation-failure-rate must be between 0 and 1")
    if args.investigation_delay_ms < 0:
        ap.error("--investigation-delay-ms must be >= 0")

    known = {op for cls in SERVICE_CLASSES for op in cls.default_limits}
    rates = {}
    for spec in args.rate:
        try:
            op, lim = parse_rate(spec, known)
        except argparse.ArgumentTypeError as e:
            ap.error(str(e))
        rates[op] = lim

    emulator = build_emulator(udf_mode=args.udf_mode, throttle=not args.no_throttle, rates=rates,
                              latency_ms=args.latency_ms, verbose=args.verbose,
                              investigation_delay_ms=args.investigation_delay_ms,
                              investigation_failure_rate=args.investigation_failure_rate, seed=args.seed,
                              iam_policies_from=args.iam_policies_from)
    return serve(EmulatorHTTPServer((args.host, args.port), emulator), args.port_file)


if __name__ == "__main__":
    sys.exit(main())
