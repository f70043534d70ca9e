"""TrainFlow: load DVC-versioned data, validate it, split it by time, train competing models, gate the best.

    python flows/train_flow.py run                       # defaults from config/
    python flows/train_flow.py run --data-rev v1.0       # the DVC-tracked data at a git revision
    python flows/train_flow.py --config profile config/profiles/aws.yaml run   # on AWS Batch
"""

from base import ProjectFlow, config_option, main
from metaflow import Parameter, card, current, step

from steps.core import decision
from steps.data import content, load, split, table
from steps.gates import assess
from steps.modeling import metrics, models, reference, training
from steps.registry import registry
from steps.reporting import cards


class TrainFlow(ProjectFlow):
    """Train every candidate in config/train.yaml on a temporal split, select the best, gate it, register it."""

    train = config_option("train", "Split, candidates, selection metric, seeds, threads, reference profile")
    gates = config_option("gates", "Promotion thresholds of every gate suite")

    data = Parameter("data", default="", help="Data source override: Parquet/CSV path or s3:// URL "
                                              "(default: the dataset config's path).")
    data_rev = Parameter("data-rev", default="", help="Git revision of the DVC-tracked data (dataset.dvc_path); "
                                                      "default: the file as it is.")
    data_repo = Parameter("data-repo", default="", help="Git+DVC repository for --data-rev (default: this one).")

    @step
    def start(self):
        """Check the candidates, load the data (path, s3:// or DVC revision), validate it, record lineage, and store
        the validated table once under the datastore root (content-addressed; ``data_ref`` says where)."""
        spec = self.typed("dataset")
        models.check_candidates(self.typed("train").candidates)  # a typo fails here, before any data is read
        source = self.data or (spec.dvc_path or spec.path if self.data_rev else spec.path)
        if not self.data_rev:  # a DVC path is relative to its repository; anything else follows the profile's roots
            source = self.typed("profile").locate(source)
        frame, lineage = load.load_table(source, spec, self.data_rev or None, self.data_repo or None,
                                         content.data_remote(self.typed("profile").data_remote))  # validated
        self.lineage = load.finish_lineage(lineage, frame, spec).to_dict()
        self.data_ref = table.write_table(frame, table.tables_root(self.datastore_root())).to_dict()
        self.feature_schema = training.feature_schema(spec)
        self.next(self.split)

    @step
    def split(self):
        """Cut train / validation / hold-out (by time unless the config says otherwise) from the columns the split
        needs; keep each row's part (``split_ref``), not copies of the parts; fan out over candidates."""
        spec, cfg = self.typed("dataset"), self.typed("train")
        frame = table.read_columns(self.data_ref, split.split_columns(spec, cfg.split), split.split_dtypes(spec))
        parts = split.cut(frame, spec, cfg.split)
        self.split_ref = table.split_ref(self.data_ref, parts.codes, parts.method, parts.warnings)
        self.split_summary = parts.summary(spec)
        self.candidates = [c.name for c in cfg.candidates]
        self.next(self.train_candidate, foreach="candidates")

    @step
    def train_candidate(self):
        """Fit one candidate pipeline on the training rows and score it on the validation rows (features and target
        only, read by reference; with a ``max_train_rows`` limit only its sample of the training rows is kept; above
        ``preprocess_fit_rows`` rows they are streamed in batches)."""
        spec, cfg = self.typed("dataset"), self.typed("train")
        candidate, columns = training.candidate_by_name(cfg, self.input), training.training_columns(spec)
        train = table.part_rows(self.split_ref, "train", columns, training.train_limit(candidate, cfg), cfg.seed)
        validation = table.read_part(self.split_ref, "validation", columns)
        result = training.train_candidate(candidate, train, validation, spec, cfg,
                                          self.typed("gates").decision_threshold, self.resources())
        self.candidate = result.summary()
        self.candidate_curves = result.curves
        self.candidate_blob = result.model_blob
        self.next(self.join)

    @card(type="blank", id="training")
    @step
    def join(self, inputs):
        """Select the best candidate on the configured validation metric."""
        cfg = self.typed("train")
        self.candidate_summaries = [inp.candidate for inp in inputs]
        curves = {inp.candidate["name"]: inp.candidate_curves for inp in inputs}
        self.model_name = metrics.select_best({s["name"]: s["metrics"] for s in self.candidate_summaries},
                                              cfg.selection_metric)
        chosen = next(inp for inp in inputs if inp.candidate["name"] == self.model_name)
        self.model_blob, self.model_fingerprint = chosen.candidate_blob, chosen.candidate["fingerprint"]
        self.decision = decision.decision_record(chosen.candidate["decision"], self.typed("gates").review.band)
        self.merge_artifacts(inputs, include=["lineage", "feature_schema", "split_summary", "data_ref", "split_ref"])
        current.card["training"].extend(cards.training_card(
            self.candidate_summaries, curves, self.model_name, cfg.selection_metric, self.lineage,
            self.split_summary))
        self.next(self.judge)

    @card(type="blank", id="gates")
    @step
    def judge(self):
        """Judge the chosen model on the hold-out (and profile it for monitoring); compare with the champion."""
        spec = self.typed("dataset")
        registry.check_resume_branch(current.flow_name, current.origin_run_id, current.branch_name)
        reg = registry.Registry(current.flow_name, current.branch_name, current.project_name, dataset=spec.name)
        champion = reg.champion_for_comparison()  # of this dataset: a comparison never crosses datasets
        model = models.deserialize(self.model_blob, self.model_fingerprint)
        holdout = table.read_part(self.split_ref, "holdout")
        assessment = assess.assess(model, self.model_blob, holdout, spec, self.typed("gates"), champion,
                                   self.decision["threshold"], self.resources().threads)
        self.champion_run_id = champion[0] if champion else None
        self.reference_profile = reference.build_reference(model, holdout, spec, self.typed("train").reference,
                                                           assessment.scores)
        self.gate_results = [r.to_dict() for r in assessment.verdict.results]
        self.gate_summary, self.gates_passed = assessment.verdict.summary(), assessment.verdict.passed
        self.gate_report, self.gate_report_json = assessment.report, assessment.verdict.to_json()
        current.card["gates"].extend(cards.gates_card(self.gate_results, self.gate_summary, self.gate_report))
        self.next(self.end)

    @step
    def end(self):
        """Register: tag the run candidate, and move the champion tag here only when every gate passed.

        Registration is the last thing the run does, so the champion tag never points at a run that can still fail.
        """
        registry.check_resume_branch(current.flow_name, current.origin_run_id, current.branch_name)
        reg = registry.Registry(current.flow_name, current.branch_name, current.project_name,
                                dataset=self.typed("dataset").name)
        self.registry_event = reg.register(current.run_id, self.gates_passed, self.gate_summary)
        outcome = "promoted to champion" if self.registry_event else "kept as candidate, failed: " + ", ".join(
            self.gate_summary["failed"])
        print(f"{self.model_name} (sha256 {self.model_fingerprint[:12]}) in {current.pathspec}: {outcome}")
        print(f"Cards: python flows/train_flow.py card view {current.run_id}/join (training), .../judge (gates)")


if __name__ == "__main__":
    main(TrainFlow)
