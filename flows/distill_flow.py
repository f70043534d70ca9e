"""DistillFlow: distil the TrainFlow champion (the teacher) into small students, export them to ONNX, serve the best.

    python flows/distill_flow.py run                          # teacher = TrainFlow champion of this branch
    python flows/distill_flow.py run --teacher-run 1234       # a given TrainFlow run (same project branch)
    python flows/distill_flow.py --config distill my.yaml run # other students / selection rule
    python flows/distill_flow.py --config profile config/profiles/aws.yaml run   # train_student on the GPU queue

The run is tagged ``serving`` (and a ``serve`` event appended to the DistillFlow audit log) only when a student
meets the selection rule and passes every gate; see steps/distill/.
"""

from base import ProjectFlow, config_option, main
from metaflow import Parameter, card, current, step

from steps.core import decision
from steps.data import table
from steps.distill import onnx, selection, students
from steps.modeling import models
from steps.registry import registry
from steps.reporting import cards

# what join carries over from the teacher (start) past the students' foreach
TEACHER_ARTIFACTS = ["teacher_run_id", "teacher_fingerprint", "teacher_model_name", "teacher_blob", "teacher_onnx",
                     "teacher_eval", "threshold", "decision", "split_ref", "lineage", "feature_schema"]


class DistillFlow(ProjectFlow):
    """Teacher -> students (foreach) -> ONNX + int8 -> parity, cost, selection -> gates -> ``serving`` tag."""

    distill = config_option("distill", "Students, transfer set, selection rule, parity limits")
    gates = config_option("gates", "Promotion thresholds (every gate but the champion's significance)")

    teacher_run = Parameter("teacher-run", default="", help="TrainFlow run id (default: the branch's champion).")

    @step
    def start(self):
        """Resolve and verify the teacher, label the transfer set with its logits, export the teacher to ONNX. The
        rows stay by reference (the teacher run's ``split_ref``): each task reads what it needs, no frame is stored."""
        spec, cfg, gates = self.typed("dataset"), self.typed("distill"), self.typed("gates")
        students.check_students(cfg.students)  # a typo fails here, before the teacher is loaded
        teacher = selection.resolve_teacher(self.teacher_run, current.branch_name, current.project_name, spec,
                                            table.tables_root(self.datastore_root()))
        self.decision = decision.decision_in_use(teacher.decision, None, gates.decision_threshold, gates.review.band)
        self.threshold = self.decision["threshold"]  # the student decides where its teacher does
        self.teacher_run_id, self.teacher_fingerprint = teacher.run_id, teacher.fingerprint
        self.teacher_model_name, self.teacher_blob = teacher.model_name, teacher.blob
        self.split_ref, self.lineage, self.feature_schema = teacher.split_ref, teacher.lineage, teacher.feature_schema
        self.transfer_fingerprint, self.transfer_logit, rows = students.label_transfer(
            self.split_ref, teacher.model, spec, cfg, self.resources())
        self.teacher_onnx = selection.export_teacher(teacher.model, spec)
        self.teacher_eval = selection.evaluate_model("teacher", "teacher", teacher.model, self.teacher_onnx, None,
                                                     table.read_part(self.split_ref, "holdout"), spec, cfg,
                                                     self.threshold)
        print(f"teacher {teacher.model_name} from TrainFlow/{teacher.run_id} (sha256 {teacher.fingerprint[:12]}), "
              f"hold-out AUC {self.teacher_eval['auc']:.4f}; transfer set {rows} rows")
        self.students = [s.name for s in cfg.students]
        self.next(self.train_student, foreach="students")

    @step
    def train_student(self):
        """Fit one student on the teacher's logits; export it (+ int8); check parity on the hold-out."""
        spec, cfg = self.typed("dataset"), self.typed("distill")
        student = next(s for s in cfg.students if s.name == self.input)
        threads, device = students.student_resources(student, cfg, self.resources())
        transfer = students.transfer_frame(self.split_ref, spec, cfg, self.transfer_fingerprint)  # the labelled rows
        pipeline, fit_info = students.fit_student(
            students.build_student(student, spec, cfg.seed, threads, device), transfer, self.transfer_logit, spec,
            threads, lambda: students.build_student(student, spec, cfg.seed, threads, "cpu"))
        self.student_blob = models.serialize(pipeline)
        self.student_onnx = onnx.to_onnx(pipeline, spec)
        quantized = onnx.quantize(self.student_onnx) if student.quantize else None
        self.student_quantized, quant = quantized if quantized else (None, None)
        ev = selection.evaluate_model(student.name, student.type, pipeline, self.student_onnx, self.student_quantized,
                                      table.read_part(self.split_ref, "holdout"), spec, cfg, self.threshold)
        self.student = {**ev, "fingerprint": models.fingerprint(self.student_blob), "fit": fit_info,
                        "quantization": onnx.explain_quantization(quant),
                        "onnx_fingerprint": models.fingerprint(self.student_onnx)}
        print(f"{student.name}: AUC {ev['auc']:.4f}; parity " + "; ".join(
            f"{runtime} max |diff| {p['max_abs_diff']:.2e}, {p['decision_flips']} decision flip(s)"
            + ("" if p.get("passed", True) else " (failed)") for runtime, p in ev["parity"].items()))
        self.next(self.join)

    @card(type="blank", id="distill")
    @step
    def join(self, inputs):
        """Time every model in one process, select the student, gate it against the teacher."""
        spec, cfg, gates = self.typed("dataset"), self.typed("distill"), self.typed("gates")
        self.merge_artifacts(inputs, include=TEACHER_ARTIFACTS)
        teacher = models.deserialize(self.teacher_blob, self.teacher_fingerprint)
        trained = [selection.TrainedStudent.from_task(inp) for inp in inputs]
        holdout = table.read_part(self.split_ref, "holdout")
        self.teacher_eval, rows = selection.time_models(teacher, self.teacher_onnx, self.teacher_eval, trained,
                                                        holdout, spec, cfg, gates.efficiency.clock)
        self.model_name, self.candidates = selection.select(rows, cfg.min_auc_ratio, cfg.max_cost_ratio)
        sel = selection.gate_selected(self.model_name, self.candidates, trained, holdout, spec, cfg,
                                      gates, champion=(self.teacher_run_id, teacher, self.teacher_blob),
                                      threshold=self.threshold)
        self.model_blob, self.model_fingerprint = sel.model_blob, sel.model_fingerprint
        self.onnx_model, self.onnx_fingerprint = sel.onnx_model, sel.onnx_fingerprint
        self.quantized_model, self.quantized = sel.quantized_model, sel.quantized
        self.gate_results, self.gate_summary, self.gates_passed = sel.gate_results, sel.gate_summary, sel.gates_passed
        self.reference_profile = sel.reference_profile  # MonitorFlow judges the student's scores against its own
        current.card["distill"].extend(cards.distill_card(self.candidates, self.teacher_eval, self.model_name, cfg,
                                                          self.gate_results))
        self.next(self.end)

    @step
    def end(self):
        """Register: tag the run candidate; move ``serving`` here only when a student was selected and passed."""
        registry.check_resume_branch(current.flow_name, current.origin_run_id, current.branch_name)
        self.registry_event = selection.register_serving(current.run_id, current.branch_name, current.project_name,
                                                         bool(self.model_name), self.gates_passed, self.gate_summary,
                                                         dataset=self.typed("dataset").name)
        outcome = ("now serving" if self.registry_event else
                   "not serving: " + ", ".join(self.gate_summary["failed"]))
        student = f"student {self.model_name}" if self.model_name else "no student chosen"
        print(f"{student} (teacher TrainFlow/{self.teacher_run_id}) in {current.pathspec}: {outcome}")
        print(f"Card: python flows/distill_flow.py card view {current.run_id}/join")


if __name__ == "__main__":
    main(DistillFlow)
