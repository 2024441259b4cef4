# **************************************************************************
# *
# * This program is free software; you can redistribute it and/or modify
# * it under the terms of the GNU General Public License as published by
# * the Free Software Foundation; either version 3 of the License, or
# * (at your option) any later version.
# *
# * This program is distributed in the hope that it will be useful,
# * but WITHOUT ANY WARRANTY; without even the implied warranty of
# * MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
# * GNU General Public License for more details.
# *
# **************************************************************************
"""DeepEMhancer post-processing of a map or of two half maps."""

import json
import os
from collections import namedtuple

import pyworkflow.protocol.params as params
import pyworkflow.utils as pwutils
from pwem.emlib.image import ImageHandler
from pwem.objects import Volume, VolumeMask
from pwem.protocols import ProtAnalysis3D
from pyworkflow.constants import PROD

from .. import Plugin
from ..constants import (INPUT_ATTACHED_HALVES, INPUT_CHOICES, INPUT_SEPARATE_HALVES, INPUT_VOLUME, MASKED_KIND,
                         MODEL_CHOICES, MODEL_CUSTOM, MODEL_HIGHRES, MODEL_KINDS, MODEL_TIGHT, MODEL_WIDE,
                         MODELS_PACKAGE, ENGINE_PACKAGE, NORM_AUTO, NORM_CHOICES, NORM_MASK, NORM_STATS,
                         TILING_CHOICES, TILING_FAST, enginePackageDir, hostHasNvidiaGpu, modelWeightsName)


Output = namedtuple("Output", "name value")


class outputs:
    """Output names and classes (not an Enum: members of the same class would be aliases of one another)."""
    outputVolume = Output("outputVolume", Volume)
    confidenceMap = Output("confidenceMap", Volume)            # --preserveHalves: 0..1, P(local error < 0.1 peak)
    localResolutionMap = Output("localResolutionMap", Volume)  # --localResolution: local resolution (A) of input
    erasedDensityMask = Output("erasedDensityMask", VolumeMask)  # --erasedMap: clear input density the output lost

    @classmethod
    def asDict(cls):
        return {o.name: o.value for o in (cls.outputVolume, cls.confidenceMap, cls.localResolutionMap,
                                          cls.erasedDensityMask)}


# Files the engine writes beside its output <stem>.mrc, as <stem>_<suffix>.mrc.
HALF_SUFFIXES = ("half1", "half2")
CONFIDENCE_SUFFIX, LOCRES_SUFFIX, ERASED_SUFFIX = "confidence", "locres", "erased"
EVALUATION_FOLDER = "evaluation"
EVALUATION_PNG = "report.png"
# The second tab: what tells the user which regions to trust, keeps what the network would remove, and scores it.
TRUST_TAB = "Confidence, protection & evaluation"
# The shipped models' headline figures, generated from their evaluations (maps never trained on) by
# benchmarks/shipped_numbers.py, so that the help below never quotes a model that is no longer shipped.
MODEL_CARD = os.path.join("deepemhancer", "models", "MODEL_CARD.md")
with open(os.path.join(enginePackageDir(), "models", "measured.json")) as _measured:
    MEASURED = json.load(_measured)
# When to choose which model.
MODEL_HELP = ("tightTarget (default): removes solvent, detergent and unmodelled density tightly around the "
              "molecule, keeping every modelled region at its local resolution. wideTarget: also keeps, at low "
              "resolution, density the atomic model does not explain (micelles, lipids, glycans): on simulated maps "
              "with such density it keeps a median {wide_test_retention} % of the input's significant 6 A density, "
              "tightTarget {tight_test_retention} %; on three depositor-masked real maps made into noisy half maps "
              "it keeps {wide_real_atoms} % of the model's atoms inside its contour (tightTarget "
              "{tight_real_atoms} %). highRes: sharpens more, for maps better than about 3 A: on the real 2.8 A map "
              "(EMD-20026) its FSC0.5 against the model is {highres_20026_fsc} A, tightTarget's {tight_20026_fsc} A, "
              "LocScale 2's {locscale_20026_fsc} A, and it beat tightTarget on {highres_sim2hr_wins} simulated maps "
              "at 2.2-3.0 A, but at 3-6 A only {highres_sim2_wins}: there tightTarget is as sharp and cleaner. "
              "Where density "
              "must be kept whatever the model does (ligands, lipids), use a protect mask or model (next tab). "
              "Custom: a model file you give (flag --deepLearningModelPath); otherwise flag -p. The model card "
              "({card}) has the per-map tables.").format(card=MODEL_CARD, **MEASURED)


class DeepEMhancerProtPostProcess(ProtAnalysis3D):
    """Post-processes a cryo-EM map with DeepEMhancer, a 3D U-Net that does masking-like noise removal and
    local sharpening in one step. Input: the unsharpened, unmasked map or (better) its two half maps.

    Reference: Sanchez-Garcia et al. (2021) Commun Biol 4:874, https://doi.org/10.1038/s42003-021-02399-1
    """
    _label = "deepEMhancer"
    _devStatus = PROD
    _possibleOutputs = outputs.asDict()

    # Choice constants on the class, so conditions below and callers read by name.
    INPUT_VOLUME, INPUT_ATTACHED_HALVES, INPUT_SEPARATE_HALVES = INPUT_VOLUME, INPUT_ATTACHED_HALVES, \
        INPUT_SEPARATE_HALVES
    NORM_AUTO, NORM_STATS, NORM_MASK = NORM_AUTO, NORM_STATS, NORM_MASK
    MODEL_TIGHT, MODEL_WIDE, MODEL_HIGHRES, MODEL_CUSTOM = MODEL_TIGHT, MODEL_WIDE, MODEL_HIGHRES, MODEL_CUSTOM

    # --------------------------- DEFINE param functions ----------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addHidden(params.USE_GPU, params.BooleanParam, default=True,
                       label="Use GPU?",
                       help="Run on the GPU(s) below. Without a GPU on the machine the engine runs on the CPU.")
        form.addHidden(params.GPU_LIST, params.StringParam, default="0",
                       label="GPU IDs",
                       help="GPU ids, e.g. 0 or 0,1 (engine flag -g). On a queue Scipion assigns them.")

        form.addParam("inputType", params.EnumParam, choices=INPUT_CHOICES, default=INPUT_VOLUME,
                      display=params.EnumParam.DISPLAY_HLIST, label="Input",
                      help="A single (unsharpened, unmasked) map, a map whose half maps are attached to it, or two "
                           "half-map volumes. With half maps the engine averages them (flags -i and -i2); "
                           "half maps usually give the best result.")
        form.addParam("inputVolume", params.PointerParam, pointerClass="Volume", important=True,
                      condition="inputType in [%d, %d]" % (INPUT_VOLUME, INPUT_ATTACHED_HALVES),
                      label="Input volume",
                      help="Map to post-process. For 'Volume with attached half maps' its half maps are used.")
        form.addParam("inputHalf1", params.PointerParam, pointerClass="Volume", important=True,
                      condition="inputType == %d" % INPUT_SEPARATE_HALVES, label="Half map 1",
                      help="First half map (engine flag -i).")
        form.addParam("inputHalf2", params.PointerParam, pointerClass="Volume", important=True,
                      condition="inputType == %d" % INPUT_SEPARATE_HALVES, label="Half map 2",
                      help="Second half map (engine flag -i2); same box and sampling as half map 1.")

        form.addParam("normalization", params.EnumParam, choices=NORM_CHOICES, default=NORM_AUTO,
                      display=params.EnumParam.DISPLAY_HLIST, label="Normalisation",
                      help="How the input intensities are scaled before the network. Automatic: noise statistics "
                           "estimated from the map. Noise statistics: give the noise mean and standard deviation "
                           "(flag --noiseStats). Binary mask: a mask of the molecule (flag -m), processed with "
                           "the masked model (tightTarget's network fine-tuned on mask-normalised maps; with "
                           "RELION's automatic mask it reaches FSC0.5 {masked_real_fsc} A on three real maps "
                           "against tightTarget's {tight_real_fsc} A without one: see the model card)."
                           .format(**MEASURED))
        form.addParam("noiseMean", params.FloatParam, default=0.0,
                      condition="normalization == %d" % NORM_STATS, label="Noise mean",
                      help="Mean of the solvent noise, in map units (flag --noiseStats MEAN STD).")
        form.addParam("noiseStd", params.FloatParam, default=1.0,
                      condition="normalization == %d" % NORM_STATS, label="Noise standard deviation",
                      validators=[params.Positive],
                      help="Standard deviation of the solvent noise, in map units (flag --noiseStats MEAN STD).")
        form.addParam("inputMask", params.PointerParam, pointerClass="VolumeMask", allowsNull=True,
                      condition="normalization == %d" % NORM_MASK, label="Binary mask",
                      help="Binary mask of the molecule, same box as the input (flag -m).")

        form.addParam("modelType", params.EnumParam, choices=MODEL_CHOICES, default=MODEL_TIGHT,
                      condition="normalization != %d" % NORM_MASK, label="Model",
                      help=MODEL_HELP)
        form.addParam("customMaskedModel", params.BooleanParam, default=False,
                      condition="normalization == %d" % NORM_MASK, label="Custom masked model?",
                      help="With a binary mask the installed masked model is used unless you give a model file.")
        form.addParam("customModelFile", params.FileParam, default="",
                      condition="(normalization != %d and modelType == %d) or (normalization == %d and "
                                "customMaskedModel)" % (NORM_MASK, MODEL_CUSTOM, NORM_MASK),
                      label="Model file",
                      help="A model's weights file (deepemhancer_<kind>.weights.h5, with its .json next to it) "
                           "(flag --deepLearningModelPath).")

        form.addParam("performCleaning", params.BooleanParam, default=False, expertLevel=params.LEVEL_ADVANCED,
                      label="Remove small blobs?",
                      help="After processing, remove connected components smaller than the fraction below of the "
                           "foreground (flag --cleaningStrengh).")
        form.addParam("cleaningFraction", params.FloatParam, default=0.05, expertLevel=params.LEVEL_ADVANCED,
                      condition="performCleaning", label="Size fraction",
                      validators=[params.Range(0.0, 1.0)],
                      help="Components smaller than this fraction of the foreground are removed (0 < f < 1).")
        form.addParam("batchSize", params.IntParam, default=8, expertLevel=params.LEVEL_ADVANCED,
                      validators=[params.Positive], label="Batch size",
                      help="Cubes predicted at once (flag -b). Lower it if the GPU runs out of memory.")
        form.addParam("tiling", params.EnumParam, choices=TILING_CHOICES, default=TILING_FAST,
                      expertLevel=params.LEVEL_ADVANCED, display=params.EnumParam.DISPLAY_HLIST, label="Tiling",
                      help="fast: fewer, blended cubes. original: the original program's dense overlapping "
                           "cubes (slower, for exact comparisons) (flag --tiling).")

        form.addSection(label=TRUST_TAB)
        halvesCondition = "inputType in [%d, %d]" % (INPUT_ATTACHED_HALVES, INPUT_SEPARATE_HALVES)
        form.addParam("preserveHalves", params.BooleanParam, default=False, condition=halvesCondition,
                      label="Preserve half maps?",
                      help="Process the two half maps independently (same normalisation) and output their average "
                           "with the two processed halves attached, so FSC and local-resolution protocols still "
                           "work afterwards; also gives a confidence map (0..1: probability that the local error is "
                           "below a tenth of the peak density, from the disagreement of the processed halves; "
                           "calibrated per model on simulated maps: see the model card) (flag --preserveHalves).")
        form.addParam("localResolution", params.BooleanParam, default=False, condition=halvesCondition,
                      label="Local resolution?",
                      help="Also compute the local resolution (A) of the input half maps by a windowed FSC "
                           "(flag --localResolution).")
        form.addParam("dampUnsupported", params.BooleanParam, default=True, condition=halvesCondition,
                      label="Damp what the halves show as noise?",
                      help="The network sees the halves' average and cannot tell low-resolution noise from weak "
                           "real density; where the two halves show only noise (their average, low-passed at 8 A, "
                           "below 3 SD of their difference's, more than 5 A away) the output is damped, so no haze "
                           "of noise is kept as density. The summary says how much was damped. No to keep it "
                           "(flag --keepUnsupported).")
        form.addParam("erasedMap", params.BooleanParam, default=True, label="Mask of erased density?",
                      help="Every run compares the output with its input at 6 A and names, in the summary, each "
                           "region of at least 400 A^3 that the input shows above its noise and the output does not "
                           "(a lipid, a ligand, a weak flexible part). With this option those regions are also "
                           "registered as a soft mask (erasedDensityMask, 0..1, empty when none): look at them in "
                           "the viewer, and if they are real, choose that mask as the Protect mask of a second run "
                           "to keep them (flag --erasedMap).")
        form.addParam("protectMask", params.PointerParam, pointerClass="VolumeMask", allowsNull=True,
                      label="Protect mask",
                      help="Optional soft mask (0..1, same box as the input) where the input density is kept "
                           "instead of being suppressed: ligands, lipids, glycans (flag --protectMask).")
        form.addParam("protectAtomStruct", params.PointerParam, pointerClass="AtomStruct", allowsNull=True,
                      label="Protect ligands of model",
                      help="Optional atomic model fitted in the map: the input density within the radius below of "
                           "its ligand atoms (non-polymer, non-water) is kept (flag --protectModel).")
        form.addParam("protectRadius", params.FloatParam, default=3.0, validators=[params.Positive],
                      label="Protect radius (A)",
                      help="Radius around the protected ligand atoms, in Angstrom (flag --protectRadius).")
        form.addParam("referenceAtomStruct", params.PointerParam, pointerClass="AtomStruct", allowsNull=True,
                      label="Evaluation model",
                      help="Optional atomic model in the map's frame: after post-processing, deepemhancer-eval "
                           "scores the output, its input and an auto-B sharpened baseline against it (FSC, CC) "
                           "and writes a report (extra/%s/%s, report.html, scores.json)."
                           % (EVALUATION_FOLDER, EVALUATION_PNG))

    # --------------------------- INSERT steps functions --------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep, self._getInputIds(), needsGPU=False)
        self._insertFunctionStep(self.enhanceStep, self._getEngineArgs(), needsGPU=True)
        if self.referenceAtomStruct.get() is not None:
            self._insertFunctionStep(self.evaluationStep, self._getEvaluationArgs(), needsGPU=False)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    # --------------------------- STEPS functions ---------------------------
    def convertInputStep(self, inputIds):
        """Place every input as MRC in extra/ (links for MRC files, conversions otherwise)."""
        for source, target in zip(self._getInputSourceFiles(), self._getInputWorkFiles()):
            self._convertToMrc(source, target)

    def enhanceStep(self, engineArgs):
        output = self._getOutputFile()
        if self._isOutputUpToDate(engineArgs):
            self.info("Output %s is newer than its inputs and was made with the same arguments: kept." % output)
            return
        pwutils.cleanPath(output, self._getArgsRecord(), self._getRunSummaryFile(),
                          *self._getExtraOutputFiles(allKinds=True))
        program, args = self._getEngineCommand(engineArgs)
        # a few seconds that tell, in this run's log, whether the environment is sound before the long part
        self.runJob(*self._getEngineCommand(self._getSelfCheckArgs()), env=Plugin.getEnviron(),
                    cwd=self._getExtraPath(), numberOfMpi=1)
        self.runJob(program, args, env=Plugin.getEnviron(), cwd=self._getExtraPath(), numberOfMpi=1)
        for fn in [output] + self._getExtraOutputFiles():
            if not os.path.exists(fn):
                raise RuntimeError("DeepEMhancer finished without writing %s; see the run log." % fn)
        with open(self._getArgsRecord(), "w") as f:
            f.write(engineArgs)

    def evaluationStep(self, evaluationArgs):
        """Score the output against the evaluation model with deepemhancer-eval (report in extra/evaluation)."""
        folder = self._getEvaluationDir()
        pwutils.cleanPath(folder)
        program = "%s && python -m %s.evaluation" % (Plugin.getActivationCmd(), ENGINE_PACKAGE)
        self.runJob(program, evaluationArgs, env=Plugin.getEnviron(), cwd=self._getExtraPath(), numberOfMpi=1)
        if not os.path.exists(self.getEvaluationReport()):
            raise RuntimeError("deepemhancer-eval finished without writing %s; see the run log."
                               % self.getEvaluationReport())

    def createOutputStep(self):
        volume = self._newVolume(self._getOutputFile())
        if self.preservesHalves():
            volume.setHalfMaps([os.path.abspath(self._getExtraOutput(s)) for s in HALF_SUFFIXES])
        newOutputs = {outputs.outputVolume.name: volume}
        if self.preservesHalves():
            newOutputs[outputs.confidenceMap.name] = self._newVolume(self._getExtraOutput(CONFIDENCE_SUFFIX))
        if self.computesLocalResolution():
            newOutputs[outputs.localResolutionMap.name] = self._newVolume(self._getExtraOutput(LOCRES_SUFFIX))
        if self.erasedMap.get():
            newOutputs[outputs.erasedDensityMask.name] = self._newVolume(self._getExtraOutput(ERASED_SUFFIX),
                                                                         VolumeMask)
        self._defineOutputs(**newOutputs)
        for pointer in self._getInputPointers():
            for output in newOutputs.values():
                self._defineTransformRelation(pointer, output)

    def _newVolume(self, fn, volumeClass=Volume):
        """A Volume (or ``volumeClass``) of this file with the input's sampling rate and origin."""
        reference = self._getReferenceVolume()
        volume = volumeClass()
        volume.setFileName(fn)
        volume.setSamplingRate(reference.getSamplingRate())
        volume.setOrigin(reference.getOrigin(force=True))
        return volume

    # --------------------------- INFO functions ----------------------------
    def _validate(self):
        errors = []
        if not Plugin.isEnvInstalled():
            errors.append("The DeepEMhancer environment is not installed (missing %s). Install it with: %s"
                          % (Plugin.getHome(), Plugin.getInstallCommand(ENGINE_PACKAGE)))
        errors += self._validateModel()
        errors += self._validateInputs()
        return errors

    def _summary(self):
        summary = ["Input: %s." % self._describeInput(),
                   "Normalisation: %s." % NORM_CHOICES[self.normalization.get()].lower(),
                   "Model: %s." % self._describeModel()]
        summary += self._describeExtras()
        if self.isFinished() and self.hasAttribute(outputs.outputVolume.name):
            summary.append("Output: %s." % self.getOutputVolume().getFileName())
            run = self.getRunSummary()
            if run:
                model = run["model"]
                summary.append("Run: model %s%s, runtime %s, %s tiling, %d of %d cubes predicted, %.1f s."
                               % (os.path.basename(model["path"]),
                                  " (weights sha256 %s...)" % model["weights_sha256"][:12]
                                  if model.get("weights_sha256") else "", run["runtime"], run["tiling"],
                                  run["cubes_evaluated"], run["cubes_total"], run["seconds"]))
                if run.get("retention") is not None:
                    missing = run.get("missing_regions", [])
                    summary.append("Retention: the output shows %.0f %% of the density the input shows above its "
                                   "noise (6 A); %s." % (100 * run["retention"], "%d region(s) of clear input "
                                   "density missing (engine note below)" % len(missing) if missing else
                                   "no region of clear input density missing"))
                summary += ["Engine note: %s." % note for note in run.get("notes", [])]
            if self.getOutputVolume().hasHalfMaps():
                summary.append("Processed half maps attached to the output.")
            for output, what in ((self.getConfidenceMap(), "Confidence map (0..1)"),
                                 (self.getLocalResolutionMap(), "Local resolution map (A)"),
                                 (self.getErasedDensityMask(), "Erased-density mask (0..1)")):
                if output is not None:
                    summary.append("%s: %s." % (what, output.getFileName()))
            if os.path.exists(self.getEvaluationReport()):
                summary.append("Evaluation report: %s." % self.getEvaluationReport())
        return summary

    def _methods(self):
        if not self.isFinished():
            return []
        methods = ["We post-processed the %s with DeepEMhancer [SanchezGarcia2021] using the %s model and %s "
                   "normalisation, producing %s."
                   % (self._describeInput(), self._describeModel(), NORM_CHOICES[self.normalization.get()].lower(),
                      self.getObjectTag(outputs.outputVolume.name))]
        if self.preservesHalves():
            methods.append("The two half maps were processed independently with the same normalisation; the output "
                           "is their average, with the processed halves kept for gold-standard FSC, and a "
                           "confidence map (%s) gives the probability that the local error is below a tenth of the "
                           "peak density, predicted from the disagreement of the processed halves."
                           % self.getObjectTag(outputs.confidenceMap.name))
        if self.computesLocalResolution():
            methods.append("The local resolution of the input half maps was estimated by a windowed FSC (%s)."
                           % self.getObjectTag(outputs.localResolutionMap.name))
        if self.protectMask.get() is not None:
            methods.append("Input density was kept inside the protect mask %s." % self.getObjectTag("protectMask"))
        if self.protectAtomStruct.get() is not None:
            methods.append("Input density was kept within %g A of the ligand atoms of %s."
                           % (self.protectRadius.get(), self.getObjectTag("protectAtomStruct")))
        return methods

    def _citations(self):
        return ["SanchezGarcia2021"]

    # --------------------------- UTILS functions ---------------------------
    def getOutputVolume(self):
        return getattr(self, outputs.outputVolume.name)

    def _getRegisteredOutput(self, output):
        """The registered output (an ``outputs`` member), or None when this run did not make it."""
        return getattr(self, output.name) if self.hasAttribute(output.name) else None

    def getConfidenceMap(self):
        """The registered confidence map, or None."""
        return self._getRegisteredOutput(outputs.confidenceMap)

    def getErasedDensityMask(self):
        """The registered mask of clear input density the output no longer shows, or None."""
        return self._getRegisteredOutput(outputs.erasedDensityMask)

    def getLocalResolutionMap(self):
        """The registered local-resolution map, or None."""
        return self._getRegisteredOutput(outputs.localResolutionMap)

    def getEvaluationReport(self):
        """Path of the evaluation report PNG (it exists only after an evaluation step)."""
        return os.path.join(self._getEvaluationDir(), EVALUATION_PNG)

    def getEvaluationScores(self):
        """Path of the evaluation's scores.json (numbers and FSC curves; exists only after an evaluation step)."""
        return os.path.join(self._getEvaluationDir(), "scores.json")

    def _getEvaluationDir(self):
        return os.path.abspath(self._getExtraPath(EVALUATION_FOLDER))

    def preservesHalves(self):
        return self.usesHalfMaps() and bool(self.preserveHalves.get())

    def computesLocalResolution(self):
        return self.usesHalfMaps() and bool(self.localResolution.get())

    def _getExtraOutput(self, suffix):
        """<output stem>_<suffix>.mrc, as the engine names the files it writes beside its output."""
        stem, ext = os.path.splitext(self._getOutputFile())
        return "%s_%s%s" % (stem, suffix, ext)

    def _getExtraOutputFiles(self, allKinds=False):
        """The files beside the output this run asks for (or all the engine may write)."""
        suffixes = []
        if allKinds or self.preservesHalves():
            suffixes += list(HALF_SUFFIXES) + [CONFIDENCE_SUFFIX]
        if allKinds or self.computesLocalResolution():
            suffixes.append(LOCRES_SUFFIX)
        if allKinds or self.erasedMap.get():
            suffixes.append(ERASED_SUFFIX)
        return [self._getExtraOutput(s) for s in suffixes]

    def _createFilenameTemplates(self):
        self._updateFilenamesDict({
            "inputMap": self._getExtraPath("input_map.mrc"),
            "inputHalf1": self._getExtraPath("input_half1.mrc"),
            "inputHalf2": self._getExtraPath("input_half2.mrc"),
            "inputMask": self._getExtraPath("input_mask.mrc"),
            "protectMask": self._getExtraPath("protect_mask.mrc"),
            "output": self._getExtraPath("deepemhancer_output.mrc"),
            "argsRecord": self._getExtraPath("deepemhancer_output.args"),
            "runSummary": self._getExtraPath("deepemhancer_summary.json"),
        })

    def _getFile(self, key):
        if not hasattr(self, "_fnDict"):
            self._createFilenameTemplates()
        return self._getFileName(key)

    def _getOutputFile(self):
        return self._getFile("output")

    def _getArgsRecord(self):
        return self._getFile("argsRecord")

    def usesHalfMaps(self):
        return self.inputType.get() in (INPUT_ATTACHED_HALVES, INPUT_SEPARATE_HALVES)

    def _getReferenceVolume(self):
        """The Volume whose sampling rate and origin the output takes."""
        if self.inputType.get() == INPUT_SEPARATE_HALVES:
            return self.inputHalf1.get()
        return self.inputVolume.get()

    def _getInputPointers(self):
        if self.inputType.get() == INPUT_SEPARATE_HALVES:
            return [self.inputHalf1, self.inputHalf2]
        return [self.inputVolume]

    def _getInputIds(self):
        ids = [p.get().getObjId() for p in self._getInputPointers() if p.get() is not None]
        if self._usesMask() and self.inputMask.get() is not None:
            ids.append(self.inputMask.get().getObjId())
        for pointer in (self.protectMask, self.protectAtomStruct, self.referenceAtomStruct):
            if pointer.get() is not None:
                ids.append(pointer.get().getObjId())
        return ids

    def _usesMask(self):
        return self.normalization.get() == NORM_MASK

    def _getInputSourceFiles(self):
        """Absolute file names of the inputs, in the order of _getInputWorkFiles."""
        inputType = self.inputType.get()
        if inputType == INPUT_ATTACHED_HALVES:
            files = self.inputVolume.get().getHalfMaps(asList=True)
        elif inputType == INPUT_SEPARATE_HALVES:
            files = [self.inputHalf1.get().getFileName(), self.inputHalf2.get().getFileName()]
        else:
            files = [self.inputVolume.get().getFileName()]
        if self._usesMask():
            files.append(self.inputMask.get().getFileName())
        if self.protectMask.get() is not None:
            files.append(self.protectMask.get().getFileName())
        return [os.path.abspath(f) for f in files]

    def _getInputWorkFiles(self):
        """MRC files in extra/: the map or the two halves first, then the masks (binary, protect) if used."""
        files = ([self._getFile("inputHalf1"), self._getFile("inputHalf2")] if self.usesHalfMaps()
                 else [self._getFile("inputMap")])
        if self._usesMask():
            files.append(self._getFile("inputMask"))
        if self.protectMask.get() is not None:
            files.append(self._getFile("protectMask"))
        return files

    def _getProtectModelFile(self):
        """The protect model's file (PDB/mmCIF) as Scipion stores it, or None."""
        atomStruct = self.protectAtomStruct.get()
        return os.path.abspath(atomStruct.getFileName()) if atomStruct is not None else None

    @staticmethod
    def _convertToMrc(source, target):
        source = source.split(":")[0]  # drop Scipion's ':mrc' format suffix
        if source.lower().endswith((".mrc", ".map")):
            if not (os.path.islink(target) and os.path.realpath(target) == os.path.realpath(source)):
                pwutils.cleanPath(target)
                pwutils.createLink(source, target)
        elif not os.path.exists(target) or os.path.getmtime(target) < os.path.getmtime(source):
            pwutils.cleanPath(target)
            ImageHandler().convert(source, target)

    def _getCustomModel(self):
        """The user's model file, or None to use the installed models."""
        if self._usesMask():
            custom = self.customMaskedModel.get()
        else:
            custom = self.modelType.get() == MODEL_CUSTOM
        return os.path.abspath(self.customModelFile.get()) if custom and self.customModelFile.get() else None

    def _getModelKind(self):
        return MASKED_KIND if self._usesMask() else MODEL_KINDS[self.modelType.get()]

    def _getEngineArgs(self):
        """Engine command-line arguments, except the GPU flag (which the executor fills in)."""
        workFiles = [os.path.abspath(f) for f in self._getInputWorkFiles()]
        args = ["-i", workFiles[0]]
        if self.usesHalfMaps():
            args += ["-i2", workFiles[1]]
        args += ["-o", os.path.abspath(self._getOutputFile()),
                 "-s", "%.6f" % self._getReferenceVolume().getSamplingRate()]
        custom = self._getCustomModel()
        if custom:
            args += ["--deepLearningModelPath", custom]
        elif not self._usesMask():  # the original forbids -p with a mask: the masked model is implied
            args += ["-p", self._getModelKind()]
        normalization = self.normalization.get()
        if normalization == NORM_STATS:
            args += ["--noiseStats", repr(self.noiseMean.get()), repr(self.noiseStd.get())]
        elif normalization == NORM_MASK:
            args += ["-m", os.path.abspath(self._getFile("inputMask"))]
        if self.performCleaning:
            args += ["--cleaningStrengh", "%g" % self.cleaningFraction.get()]
        if self.preservesHalves():
            args.append("--preserveHalves")
        if self.computesLocalResolution():
            args.append("--localResolution")
        if self.erasedMap.get():
            args.append("--erasedMap")
        if self.usesHalfMaps() and not self.dampUnsupported.get():
            args.append("--keepUnsupported")
        if self.protectMask.get() is not None:
            args += ["--protectMask", os.path.abspath(self._getFile("protectMask"))]
        if self.protectAtomStruct.get() is not None:
            args += ["--protectModel", self._getProtectModelFile(), "--protectRadius", "%g" % self.protectRadius.get()]
        args += ["-b", "%d" % self.batchSize.get(), "--tiling", TILING_CHOICES[self.tiling.get()],
                 "--summaryJson", os.path.abspath(self._getRunSummaryFile()), "--overwrite"]
        return " ".join(_quote(a) for a in args)

    def _getSelfCheckArgs(self):
        """`deepemhancer --selfcheck` for the model this run uses (the GPU flag is added like the engine's)."""
        custom = self._getCustomModel()
        return "--selfcheck" + (" --deepLearningModelPath %s" % _quote(custom) if custom else "")

    def _getRunSummaryFile(self):
        return self._getFile("runSummary")

    def getRunSummary(self):
        """What the engine reported about the run (model, runtime, cubes, seconds, notes), or None."""
        fn = self._getRunSummaryFile()
        if not os.path.exists(fn):
            return None
        with open(fn) as f:
            return json.load(f)

    def _getEvaluationArgs(self):
        """deepemhancer-eval arguments: the output, the input (halves or map), the evaluation model."""
        workFiles = [os.path.abspath(f) for f in self._getInputWorkFiles()]
        args = ["-i", os.path.abspath(self._getOutputFile()), "--label", "deepEMhancer"]
        if self.usesHalfMaps():
            args += ["--half1", workFiles[0], "--half2", workFiles[1]]
        else:
            args += ["--input", workFiles[0]]
        # RELION's postprocess joins the comparison where it is installed (half maps only); a note says so otherwise
        args += ["--model", os.path.abspath(self.referenceAtomStruct.get().getFileName()),
                 "-o", self._getEvaluationDir(), "--title", "DeepEMhancer run %s" % self.getObjId()]
        return " ".join(_quote(a) for a in args)

    def _getEngineCommand(self, engineArgs):
        """(program, arguments) for runJob, with the GPUs of the step or the CPU.

        With a GPU the executor (local or queue) replaces `%(GPU)s` by the GPUs assigned to the step; in the program
        it joins several with commas, which CUDA_VISIBLE_DEVICES needs, and the engine then uses all it sees.
        Without a GPU on the host that runs the step the engine gets -g -1 (CPU).
        """
        if self.usesGpu() and hostHasNvidiaGpu():
            return "export CUDA_VISIBLE_DEVICES=%%(GPU)s && %s" % Plugin.getProgram(), engineArgs + " -g all"
        return Plugin.getProgram(), engineArgs + " -g -1"

    def _isOutputUpToDate(self, engineArgs):
        """True only when the output is complete, newer than every input and made with the same arguments.

        The engine writes atomically, so an existing output is complete; anything else re-runs the engine.
        """
        output, record = self._getOutputFile(), self._getArgsRecord()
        if not (os.path.exists(output) and os.path.exists(record)):
            return False
        with open(record) as f:
            if f.read() != engineArgs:
                return False
        if not all(os.path.exists(f) for f in self._getExtraOutputFiles()):
            return False
        outputTime = os.path.getmtime(output)
        dependencies = self._getInputWorkFiles()
        if self._getCustomModel():
            dependencies.append(self._getCustomModel())
        if self._getProtectModelFile():
            dependencies.append(self._getProtectModelFile())
        return all(os.path.exists(f) and os.path.getmtime(f) < outputTime for f in dependencies)

    def _validateModel(self):
        if self._getCustomModel():
            if not os.path.exists(self._getCustomModel()):
                return ["Model file %s does not exist." % self._getCustomModel()]
            return []
        if (self._usesMask() and self.customMaskedModel.get()) or \
                (not self._usesMask() and self.modelType.get() == MODEL_CUSTOM):
            return ["Choose the custom model file."]
        # The engine also finds the models shipped inside its package (the env's copy of this plugin's engine).
        name = modelWeightsName(self._getModelKind())
        weights = Plugin.getModelsDir(name)
        if not any(os.path.exists(f) for f in (weights, os.path.join(enginePackageDir(), "models", name))):
            return ["The %s model is not installed (missing %s). Install the models with: %s"
                    % (self._getModelKind(), weights, Plugin.getInstallCommand(MODELS_PACKAGE))]
        return []

    def _validateInputs(self):
        inputType = self.inputType.get()
        errors = []
        if any(p.get() is None for p in self._getInputPointers()):
            return ["Choose the input volume(s)."]
        if inputType == INPUT_ATTACHED_HALVES:
            volume = self.inputVolume.get()
            halves = volume.getHalfMaps(asList=True) if volume.hasHalfMaps() else []
            if len(halves) != 2:
                return ["The input volume has no attached half maps; choose 'Two half-map volumes' or import the "
                        "volume with its half maps."]
            dims = [ImageHandler().getDimensions(f)[:3] for f in halves]
            if dims[0] != dims[1]:
                errors.append("The attached half maps differ in size: %s vs %s." % (dims[0], dims[1]))
            referenceDim = dims[0]
        elif inputType == INPUT_SEPARATE_HALVES:
            half1, half2 = self.inputHalf1.get(), self.inputHalf2.get()
            if half1.getDim() != half2.getDim():
                errors.append("The half maps differ in size: %s vs %s." % (half1.getDim(), half2.getDim()))
            if abs(half1.getSamplingRate() - half2.getSamplingRate()) > 1e-3:
                errors.append("The half maps differ in sampling rate: %.4f vs %.4f A/px."
                              % (half1.getSamplingRate(), half2.getSamplingRate()))
            referenceDim = half1.getDim()
        else:
            referenceDim = self.inputVolume.get().getDim()

        if self._usesMask():
            mask = self.inputMask.get()
            if mask is None:
                errors.append("Binary-mask normalisation needs a mask: choose one or change the normalisation.")
            elif tuple(mask.getDim()) != tuple(referenceDim):
                errors.append("The mask box %s differs from the input box %s." % (mask.getDim(), referenceDim))
        errors += self._validateBeyond(referenceDim)
        return errors

    def _validateBeyond(self, referenceDim):
        errors = []
        if not self.usesHalfMaps():
            for name, flag in (("preserveHalves", "Preserve half maps"), ("localResolution", "Local resolution")):
                if getattr(self, name).get():
                    errors.append("'%s' needs two half maps: choose 'Volume with attached half maps' or 'Two "
                                  "half-map volumes' as input, or switch it off." % flag)
        protectMask = self.protectMask.get()
        if protectMask is not None and tuple(protectMask.getDim()) != tuple(referenceDim):
            errors.append("The protect mask box %s differs from the input box %s."
                          % (protectMask.getDim(), referenceDim))
        for name, what in (("protectAtomStruct", "protect model"), ("referenceAtomStruct", "evaluation model")):
            atomStruct = getattr(self, name).get()
            if atomStruct is not None and not os.path.exists(atomStruct.getFileName()):
                errors.append("The %s file %s does not exist." % (what, atomStruct.getFileName()))
        return errors

    def _describeInput(self):
        inputType = self.inputType.get()
        if inputType == INPUT_SEPARATE_HALVES:
            return "half maps %s and %s" % (self.getObjectTag("inputHalf1"), self.getObjectTag("inputHalf2"))
        if inputType == INPUT_ATTACHED_HALVES:
            return "half maps attached to %s" % self.getObjectTag("inputVolume")
        return "map %s" % self.getObjectTag("inputVolume")

    def _describeExtras(self):
        lines = []
        if self.preservesHalves():
            lines.append("Half maps processed independently (processed halves + confidence map).")
        if self.computesLocalResolution():
            lines.append("Local resolution of the input halves computed.")
        if self.protectMask.get() is not None:
            lines.append("Protect mask: %s." % self.getObjectTag("protectMask"))
        if self.protectAtomStruct.get() is not None:
            lines.append("Protected: ligands of %s within %g A."
                         % (self.getObjectTag("protectAtomStruct"), self.protectRadius.get()))
        if self.referenceAtomStruct.get() is not None:
            lines.append("Evaluated against %s." % self.getObjectTag("referenceAtomStruct"))
        return lines

    def _describeModel(self):
        custom = self._getCustomModel()
        return "custom (%s)" % os.path.basename(custom) if custom else self._getModelKind()


def _quote(arg):
    return "'%s'" % arg if any(c in arg for c in " \"'$&;()") else arg

