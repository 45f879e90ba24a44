"""Benchmark the audit hash chain: the relay's chaining cost per entry and ``audit verify``'s walk.

Creates a scratch database, writes ``--entries`` audit entries in units of work of ``--per-commit``
entries (as commands do: a few entries each), and measures:

- chaining: one relay pass per ``--per-commit`` commits (as the coalescing relay thread does under
  load), entries chained per second and the pass time percentiles;
- verify: entries walked per second by ``audit.verify``;
- the bare insert rate of the same entries, as the machine's own ceiling for comparison.

    python -m scripts.bench.audit --entries 5000
"""

from __future__ import annotations

import argparse
import os
import secrets
import time

from scripts.bench.common import (  # standard library only: safe before the re-exec
    create_database,
    drop_database,
    percentile,
    reexec_in_venv,
)


def main() -> None:
    reexec_in_venv()
    parser = argparse.ArgumentParser(prog="python -m scripts.bench.audit",
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--per-commit", type=int, default=3, help="entries per unit of work (a command writes 2-4)")
    parser.add_argument("--commits-per-pass", type=int, default=16, help="commits each relay pass finds")
    args = parser.parse_args()

    from orchestrator import audit
    from orchestrator.db import create_sync_engine
    from orchestrator.db.migrate import upgrade
    from orchestrator.outbox import relay
    from orchestrator.unit_of_work import Context, UnitOfWork

    name = f"offerhub_bench_audit_{secrets.token_hex(4)}"
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    create_database(name)
    try:
        os.environ["DATABASE_URL"] = url
        upgrade(url)
        engine = create_sync_engine(url, pool_size=2)
        payload = {"orderId": "ord_bench", "amount": "12.50", "email": "someone@example.com", "note": "x" * 80}
        commits = max(1, args.entries // args.per_commit)
        insert_seconds, pass_times = 0.0, []
        for n in range(commits):
            started = time.perf_counter()
            with UnitOfWork(engine, Context(actor_type="SYSTEM", actor_id="bench")) as uow:
                for _ in range(args.per_commit):
                    uow.audit("bench.entry", "Order", f"ord_{n}", after=payload)
                uow.commit()
            insert_seconds += time.perf_counter() - started
            if (n + 1) % args.commits_per_pass == 0 or n == commits - 1:
                started = time.perf_counter()
                relay.relay(engine)
                pass_times.append(time.perf_counter() - started)
        total = commits * args.per_commit
        chain_seconds = sum(pass_times)
        with engine.connect() as conn:
            started = time.perf_counter()
            found = audit.verify(conn)
            verify_seconds = time.perf_counter() - started
        assert found.ok, found.problem
        assert found.checked == total
        cores = os.cpu_count()
        print(f"audit chain on {cores} core(s): {total} entries, {args.per_commit} per commit, "
              f"{args.commits_per_pass} commits per relay pass")
        print(f"  insert (units of work, the ceiling): {total / insert_seconds:,.0f} entries/s")
        print(f"  chaining (relay passes):            {total / chain_seconds:,.0f} entries/s; pass p50 "
              f"{percentile(pass_times, 50) * 1000:.1f} ms, p99 {percentile(pass_times, 99) * 1000:.1f} ms")
        print(f"  verify walk:                        {total / verify_seconds:,.0f} entries/s")
        engine.dispose()
    finally:
        drop_database(name)


if __name__ == "__main__":
    main()
