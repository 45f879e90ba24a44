"""Every kind of chain step by name, gathered from the aggregates that own them.

Apart from ``chain_steps`` so that the engine imports no aggregate: wallets, escrows and withdrawals all
create steps, so the engine cannot import them without a circle.
"""

from __future__ import annotations

from orchestrator.accounts import wallets
from orchestrator.chain_steps import StepKind
from orchestrator.escrow import escrows
from orchestrator.payments import withdrawals

ALL: dict[str, StepKind] = {**wallets.STEP_KINDS, **escrows.STEP_KINDS, **withdrawals.STEP_KINDS}
