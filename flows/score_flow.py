"""ScoreFlow: nightly batch scoring of a Parquet input with the champion, sharded and streamed to partitioned Parquet.

    python flows/score_flow.py run                                   # config/score.yaml: input, output, today (UTC)
    python flows/score_flow.py run --date 2026-01-31 --input s3://bucket/incoming/ --output s3://bucket/predictions
    python flows/score_flow.py run --model-run 1234 --shadow-run 1250   # a given model, and a challenger in shadow
    python flows/score_flow.py --config profile config/profiles/aws.yaml step-functions create   # nightly on AWS

Output: <output>/dt=YYYY-MM-DD/part-NNNNN-of-NNNNN.parquet plus _manifest.json (written last), and rows that failed
validation under <output>/_quarantine/dt=YYYY-MM-DD/. See steps/scoring/ for the guarantees.
"""

from base import ProjectFlow, config_option, main
from metaflow import Parameter, card, config_expr, current, schedule, step

from steps.reporting import cards
from steps.scoring import claims, faults, partition, prepare, runtime, shard


@schedule(cron=config_expr("score.schedule_cron"))
class ScoreFlow(ProjectFlow):
    """Score one day's input with the champion (or --model-run): shards in parallel, one Parquet part each."""

    score = config_option("score", "Batch scoring: input, output, schedule, shards, runtime, threshold, quarantine")
    gates = config_option("gates", "Promotion thresholds (the decision threshold when score.yaml sets none)")

    source = Parameter("input", default="", help="Parquet file, folder or s3:// prefix (default: score.input).")
    output = Parameter("output", default="", help="Output root, local or s3:// (default: score.output_root).")
    date = Parameter("date", default="", help="Partition date YYYY-MM-DD (default: today, UTC).")
    model_run = Parameter("model-run", default="", help="TrainFlow run id or pathspec (default: the champion).")
    shadow_run = Parameter("shadow-run", default="", help="TrainFlow run scored in shadow columns (a batch canary); "
                                                          "default: none.")
    force = Parameter("force", default="", help="Score with a --model-run/--shadow-run that failed its gates or is a "
                      "run of another flow or dataset; the value is the reason, recorded in the manifest "
                      "(default: such runs are refused).")
    decision_threshold = Parameter("decision-threshold", default="", help="Decide at this score for this run only "
                                   "(logged, recorded in the manifest); default: the model's own threshold.")

    @step
    def start(self):
        """Check the arguments, resolve and verify the model(s), cut shards, claim the date, retract its manifest."""
        request = prepare.Request(self.source, self.output, self.date, self.model_run, self.shadow_run, self.force,
                                  self.decision_threshold)
        p = prepare.prepare(request, self.typed("dataset"), self.typed("score"), self.typed("profile"),
                            self.typed("gates"), current.branch_name, current.project_name,
                            f"{current.flow_name}/{current.run_id}")
        self.decision, self.threshold, self.feature_names = p.decision, p.decision["threshold"], p.feature_names
        self.onnx_model, self.onnx_parity = p.onnx_model, p.onnx_parity
        self.model_run_used, self.model_name, self.model_fingerprint = p.model.run, p.model.name, p.model.fingerprint
        self.model_blob = p.model.blob
        self.shadow, self.shadow_blob = (p.shadow.describe(), p.shadow.blob) if p.shadow else (None, None)
        self.plan, self.manifest_header, self.retracted_manifest = p.plan, p.manifest_header, p.retracted_manifest
        self.shards = p.shards
        self.next(self.score_shard, foreach="shards")

    @step
    def score_shard(self):
        """Stream one shard: validate rows, score, write its part atomically (quarantine the invalid rows)."""
        spec, cfg = self.typed("dataset"), self.typed("score")
        model, shadow, explain = runtime.scorers_for(
            cfg, spec, self.model_blob, self.model_fingerprint, self.onnx_model, self.shadow_blob,
            self.shadow["fingerprint"] if self.shadow else None)
        job = shard.job_for(self.input, self.plan, spec, cfg, self.decision,
                            {"run": self.model_run_used, "fingerprint": self.model_fingerprint}, self.feature_names,
                            tmp_dir=getattr(current, "tempdir", None))
        guard = shard.guard_for(job.shard.index, current.retry_count,
                                getattr(current, "spot_termination_notice", None), cfg, self.plan["claim"])
        self.shard_result = shard.score_shard(job, model, shadow, explain, guard, cfg.threads)
        self.next(self.join)

    @card(type="blank", id="scoring")
    @step
    def join(self, inputs):
        """Check every shard's counts, gate the quarantine rate, remove stale parts, write the manifest last."""
        self.merge_artifacts(inputs, include=["plan", "manifest_header", "model_run_used", "model_name",
                                              "model_fingerprint", "shadow", "threshold", "decision", "feature_names",
                                              "onnx_parity", "retracted_manifest"])
        self.shard_results = sorted((inp.shard_result for inp in inputs), key=lambda r: r["shard"])
        self.manifest = partition.finish_partition(self.plan["output_root"], self.plan["date"], self.shard_results,
                                                   self.manifest_header, self.typed("score").max_quarantine_rate,
                                                   f"{current.flow_name}/{current.run_id}",
                                                   claims.Claim.from_dict(self.plan["claim"]),
                                                   tuple(faults.fault_plan(self.typed("score").fault_injection)),
                                                   current.retry_count)
        self.totals, self.shadow_report = self.manifest["totals"], self.manifest["shadow"]
        location = partition.partition_uri(self.plan["output_root"], self.plan["date"])
        current.card["scoring"].extend(cards.score_card(self.manifest, location))
        self.next(self.end)

    @step
    def end(self):
        """Say where the partition is and what went into it."""
        for line in partition.summary_lines(self.manifest, self.plan["output_root"]):
            print(line)
        print(f"Card: python flows/score_flow.py card view {current.run_id}/join")

if __name__ == "__main__":
    main(ScoreFlow)
