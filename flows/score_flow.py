"""ScoreFlow: nightly batch scoring of a Parquet input with the champion, sharded and streamed to partitioned Parquet.

    python flows/score_flow.py run                                   # config/score.yaml: input, output, today (UTC)
    python flows/score_flow.py run --date 2026-01-31 --input s3://bucket/incoming/ --output s3://bucket/predictions
    python flows/score_flow.py run --model-run 1234 --shadow-run 1250   # a given model, and a challenger in shadow
    python flows/score_flow.py --config profile config/profiles/aws.yaml step-functions create   # nightly on AWS

Output: <output>/dt=YYYY-MM-DD/part-NNNNN-of-NNNNN.parquet plus _manifest.json (written last), and rows that failed
validation under <output>/_quarantine/dt=YYYY-MM-DD/. See steps/score.py for the guarantees.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # steps/ sits beside flows/

from metaflow import Config, FlowSpec, Parameter, config_expr, current, project, schedule, step  # noqa: E402
from mutators import apply_profile  # noqa: E402

from steps import score  # noqa: E402
from steps.config import DatasetConfig, GatesConfig, ProfileConfig, ScoreConfig, load  # noqa: E402

PROFILE = os.environ.get("MLOPS_PROFILE", "config/profiles/local.yaml")


@apply_profile
@schedule(cron=config_expr("score.schedule_cron"))
@project(name="tabular_mlops")
class ScoreFlow(FlowSpec):
    """Score one day's input with the champion (or --model-run): shards in parallel, one Parquet part each."""

    dataset = Config("dataset", default="config/dataset.yaml", parser="steps.config.parse_dataset")
    score_config = Config("score", default="config/score.yaml", parser="steps.config.parse_score")
    gates_config = Config("gates", default="config/gates.yaml", parser="steps.config.parse_gates")
    profile = Config("profile", default=PROFILE, parser="steps.config.parse_profile")

    source = Parameter("input", default="", help="Parquet file, folder or s3:// prefix (default: score.input).")
    output = Parameter("output", default="", help="Output root, local or s3:// (default: score.output_root).")
    date = Parameter("date", default="", help="Partition date YYYY-MM-DD (default: today, UTC).")
    model_run = Parameter("model-run", default="", help="TrainFlow run id or pathspec (default: the champion).")
    shadow_run = Parameter("shadow-run", default="", help="TrainFlow run scored in shadow columns (a batch canary).")

    @step
    def start(self):
        """Resolve and verify the model(s), check the inputs' footers, cut the shards, retract the old manifest."""
        spec, cfg = load(DatasetConfig, self.dataset), load(ScoreConfig, self.score_config)
        self.threshold = cfg.decision_threshold or load(GatesConfig, self.gates_config).decision_threshold
        model = score.resolve_model(self.model_run or None, current.branch_name, current.project_name, spec)
        shadow = score.resolve_model(self.shadow_run, current.branch_name, current.project_name, spec) \
            if self.shadow_run else None
        self.feature_names = score.check_explainable(model.pipeline, cfg.top_k) if cfg.top_k else []
        profile = load(ProfileConfig, self.profile)  # relative paths resolve under its storage root; s3:// is checked
        plan = score.plan_run(profile.locate(self.source or cfg.input), profile.locate(self.output or cfg.output_root),
                              self.date, spec, cfg.shard_rows)
        self.onnx_model, self.onnx_parity = score.prepare_runtime(model, cfg, spec, plan.files, self.threshold)
        self.model_run_used, self.model_name, self.model_fingerprint = model.run, model.name, model.fingerprint
        self.model_blob = model.blob
        self.shadow = shadow.describe() if shadow else None
        self.shadow_blob = shadow.blob if shadow else None
        self.plan = plan.summary()
        self.manifest_header = score.manifest_header(f"{current.flow_name}/{current.run_id}", plan, model, shadow,
                                                     cfg, self.threshold, self.onnx_parity)
        self.retracted_manifest = score.retract_manifest(plan.output_root, plan.day)
        self.shards = [s.to_dict() for s in plan.shards]
        self.next(self.score_shard, foreach="shards")

    @step
    def score_shard(self):
        """Stream one shard: validate rows, score, write its part atomically (quarantine the invalid rows)."""
        spec, cfg = load(DatasetConfig, self.dataset), load(ScoreConfig, self.score_config)
        model, shadow, explain = score.scorers_for(
            cfg, spec, self.model_blob, self.model_fingerprint, self.onnx_model, self.shadow_blob,
            self.shadow["fingerprint"] if self.shadow else None)
        job = score.job_for(self.input, self.plan, spec, cfg, self.threshold,
                            {"run": self.model_run_used, "fingerprint": self.model_fingerprint}, self.feature_names,
                            tmp_dir=getattr(current, "tempdir", None))
        guard = score.guard_for(job.shard.index, current.retry_count,
                                getattr(current, "spot_termination_notice", None), cfg)
        self.shard_result = score.score_shard(job, model, shadow, explain, guard, cfg.threads)
        self.next(self.join)

    @step
    def join(self, inputs):
        """Check every shard's counts, gate the quarantine rate, remove stale parts, write the manifest last."""
        cfg = load(ScoreConfig, self.score_config)
        self.merge_artifacts(inputs, include=["plan", "manifest_header", "model_run_used", "model_name",
                                              "model_fingerprint", "shadow", "threshold", "feature_names",
                                              "onnx_parity", "retracted_manifest"])
        self.shard_results = sorted((inp.shard_result for inp in inputs), key=lambda r: r["shard"])
        self.manifest = score.finish_partition(self.plan["output_root"], self.plan["date"], self.shard_results,
                                               self.manifest_header, cfg.max_quarantine_rate,
                                               f"{current.flow_name}/{current.run_id}")
        self.totals, self.shadow_report = self.manifest["totals"], self.manifest["shadow"]
        self.next(self.end)

    @step
    def end(self):
        """Say where the partition is and what went into it."""
        t = self.totals
        where = score.partition_uri(self.plan["output_root"], self.plan["date"])
        print(f"{where}: {t['rows_out']} rows scored, {t['rows_quarantined']} quarantined "
              f"({100 * t['quarantine_rate']:.2f}%) by {self.model_name} ({self.model_run_used}, sha256 "
              f"{self.model_fingerprint[:12]})")
        if self.shadow_report:
            print(f"shadow {self.shadow['run']}: decisions agree on {100 * self.shadow_report['agreement_rate']:.2f}% "
                  f"of rows, mean |score diff| {self.shadow_report['mean_abs_diff']:.4f}")


if __name__ == "__main__":
    ScoreFlow()
