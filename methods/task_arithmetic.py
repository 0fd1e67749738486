"""Task Arithmetic, single best (PROTOCOL §4.1; Ilharco et al. 2023, [P T1 †, T2 †]).

1. For each pool member i, run the active λ rule on τ_i alone: (λ_i*, score_i).
2. i* = argmin_i score_i, ties to the smaller i.
3. Output τ_{i*} with λ_{i*}*.

Cost: n·|Λ| selection evaluations. The pool is the one every merge uses, streamed: only
the best τ so far is held. [OURS] The score is the rule's own score ([NM] has no script
that selects among candidates).

``linear-task-arithmetic`` (PROTOCOL §4.8; Ortiz-Jiménez et al. 2023, the paper's Linear Task
Arithmetic block [P T1]): the same steps over the linear pool (``pool.linear=true``), whose members
are fine-tuned as θ_0's linearised model f_lin and whose edits are evaluated as f_lin(θ_0 − λτ).
Each member's λ sweep then costs one jvp per split, not a forward per λ (the logits are affine in
λ). Every merge runs over the linear pool the same way: ``-o pool.linear=true``.
"""
from __future__ import annotations

from unlearnbench import Method, Result, hookimpl


class TaskArithmetic(Method):
    name = "task-arithmetic"
    description = "the single best pool member, negated, with its best lambda (the rule's score)"
    reference_url = "https://arxiv.org/abs/2212.04089"
    uses = frozenset({"forget"})
    uses_pool = True
    claim_role = "single_best"  # NegMerge's main comparison [P T1, T2]

    def replay_pool(self, record: dict) -> list[int] | None:
        """An ensemble run replays the chosen member's recipe (its config, fine-tuned afresh for the run's
        pool) at the recorded λ* (PROTOCOL §8.7.0: no search, so no choice among members)."""
        return [int(record["info"]["best_member"]["index"])]

    def unlearn(self, ctx) -> Result:
        best = None
        scores = []
        # selection.also: every other rule picks its own best member from the same sweeps (PROTOCOL §5(d))
        also_best: dict = {}
        also_scores: dict = {}
        for member, tau in ctx.pool():  # step 1, streamed
            sel = ctx.select(tau)
            scores.append({"index": member["index"], "key": member["key"], "lambda": sel.lam, "score": sel.score})
            if best is None or sel.score < best[1].score:  # step 2: strict, so ties go to the smaller i
                best = (member, sel, tau)
            for name, choice in sel.also.items():
                also_scores.setdefault(name, []).append({"index": member["index"], "lambda": choice["lambda"],
                                                         "score": choice["score"]})
                if name not in also_best or choice["score"] < also_best[name][1].also[name]["score"]:
                    also_best[name] = (member, sel, tau)
        member, sel, tau = best
        by_rule = {name: Result(ctx.apply(t, s.also[name]["lambda"]), lam=s.also[name]["lambda"], selection=s,
                                merged=t, info={"best_member": m, "member_scores": also_scores[name]})
                   for name, (m, s, t) in also_best.items()}
        return Result(ctx.apply(tau, sel.lam), lam=sel.lam, selection=sel, merged=tau,  # step 3
                      info={"best_member": member, "member_scores": scores}, by_rule=by_rule,
                      diagnostics=[{"index": s["index"], "key": s["key"], "lambda": s["lambda"]} for s in scores])


class LinearTaskArithmetic(TaskArithmetic):
    name = "linear-task-arithmetic"
    title = "Linear Task Arithmetic"
    description = ("the single best member of the linear pool (fine-tuned in θ_0's tangent space), negated, with "
                   "its best lambda, evaluated as the linearised model")
    reference_url = "https://arxiv.org/abs/2305.12827"
    claim_role = ""  # the paper's claims compare NegMerge with standard TA [P T1, T2]
    suite_defaults = {"pool": {"linear": True}}  # PROTOCOL §4.8


@hookimpl
def register_methods(register):
    register(TaskArithmetic())
    register(LinearTaskArithmetic())
