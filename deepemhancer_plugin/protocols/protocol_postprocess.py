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

import os
from enum import Enum

import pyworkflow.protocol.params as params
import pyworkflow.utils as pwutils
from pwem.emlib.image import ImageHandler
from pwem.objects import Volume
from pwem.protocols import ProtAnalysis3D
from pyworkflow.constants import PROD

from .. import Plugin
from ..constants import (INPUT_ATTACHED_HALVES, INPUT_CHOICES, INPUT_SEPARATE_HALVES, INPUT_VOLUME, MASKED_KIND,
                         MODEL_CHOICES, MODEL_CUSTOM, MODEL_HIGHRES, MODEL_KINDS, MODEL_TIGHT, MODEL_WIDE,
                         MODELS_PACKAGE, ENGINE_PACKAGE, NORM_AUTO, NORM_CHOICES, NORM_MASK, NORM_STATS,
                         TILING_CHOICES, TILING_FAST, enginePackageDir, modelWeightsName)


class outputs(Enum):
    outputVolume = Volume


class DeepEMhancerProtPostProcess(ProtAnalysis3D):
    """Post-processes a cryo-EM map with DeepEMhancer, a 3D U-Net that does masking-like noise removal and
    local sharpening in one step. Input: the unsharpened, unmasked map or (better) its two half maps.

    Reference: Sanchez-Garcia et al. (2021) Commun Biol 4:874, https://doi.org/10.1038/s42003-021-02399-1
    """
    _label = "deepEMhancer"
    _devStatus = PROD
    _possibleOutputs = outputs

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
                           "the masked model.")
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
                      help="tightTarget: trained on tightly masked targets (default). wideTarget: less aggressive "
                           "masking. highRes: for maps better than ~4 A. Custom: a model file you give "
                           "(flag --deepLearningModelPath); otherwise flag -p.")
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

    # --------------------------- INSERT steps functions --------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep, self._getInputIds(), needsGPU=False)
        self._insertFunctionStep(self.enhanceStep, self._getEngineArgs(), needsGPU=True)
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
        pwutils.cleanPath(output, self._getArgsRecord())
        program, args = self._getEngineCommand(engineArgs)
        self.runJob(program, args, env=Plugin.getEnviron(), cwd=self._getExtraPath(), numberOfMpi=1)
        if not os.path.exists(output):
            raise RuntimeError("DeepEMhancer finished without writing %s; see the run log." % output)
        with open(self._getArgsRecord(), "w") as f:
            f.write(engineArgs)

    def createOutputStep(self):
        reference = self._getReferenceVolume()
        volume = Volume()
        volume.setFileName(self._getOutputFile())
        volume.setSamplingRate(reference.getSamplingRate())
        volume.setOrigin(reference.getOrigin(force=True))
        self._defineOutputs(**{outputs.outputVolume.name: volume})
        for pointer in self._getInputPointers():
            self._defineTransformRelation(pointer, volume)

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
        if self.isFinished() and self.hasAttribute(outputs.outputVolume.name):
            summary.append("Output: %s." % self.getOutputVolume().getFileName())
        return summary

    def _methods(self):
        if not self.isFinished():
            return []
        return ["We post-processed the %s with DeepEMhancer [SanchezGarcia2021] using the %s model and %s "
                "normalisation, producing %s."
                % (self._describeInput(), self._describeModel(), NORM_CHOICES[self.normalization.get()].lower(),
                   self.getObjectTag(outputs.outputVolume.name))]

    def _citations(self):
        return ["SanchezGarcia2021"]

    # --------------------------- UTILS functions ---------------------------
    def getOutputVolume(self):
        return getattr(self, outputs.outputVolume.name)

    def _createFilenameTemplates(self):
        self._updateFilenamesDict({
            "inputMap": self._getExtraPath("input_map.mrc"),
            "inputHalf1": self._getExtraPath("input_half1.mrc"),
            "inputHalf2": self._getExtraPath("input_half2.mrc"),
            "inputMask": self._getExtraPath("input_mask.mrc"),
            "output": self._getExtraPath("deepemhancer_output.mrc"),
            "argsRecord": self._getExtraPath("deepemhancer_output.args"),
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
        return [os.path.abspath(f) for f in files]

    def _getInputWorkFiles(self):
        files = ([self._getFile("inputHalf1"), self._getFile("inputHalf2")] if self.usesHalfMaps()
                 else [self._getFile("inputMap")])
        if self._usesMask():
            files.append(self._getFile("inputMask"))
        return files

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
            args += ["-m", workFiles[-1]]
        if self.performCleaning:
            args += ["--cleaningStrengh", "%g" % self.cleaningFraction.get()]
        args += ["-b", "%d" % self.batchSize.get(), "--tiling", TILING_CHOICES[self.tiling.get()], "--overwrite"]
        return " ".join(_quote(a) for a in args)

    def _getEngineCommand(self, engineArgs):
        """(program, arguments) for runJob, with the GPUs of the step or the CPU.

        With a GPU the executor (local or queue) replaces `%(GPU)s` by the GPUs assigned to the step; in the program
        it joins several with commas, which CUDA_VISIBLE_DEVICES needs, and the engine then uses all it sees.
        Without a GPU on the host that runs the step the engine gets -g -1 (CPU).
        """
        if self.usesGpu() and _machineHasGpu():
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
        outputTime = os.path.getmtime(output)
        dependencies = self._getInputWorkFiles()
        if self._getCustomModel():
            dependencies.append(self._getCustomModel())
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
        return errors

    def _describeInput(self):
        inputType = self.inputType.get()
        if inputType == INPUT_SEPARATE_HALVES:
            return "half maps %s and %s" % (self.getObjectTag("inputHalf1"), self.getObjectTag("inputHalf2"))
        if inputType == INPUT_ATTACHED_HALVES:
            return "half maps attached to %s" % self.getObjectTag("inputVolume")
        return "map %s" % self.getObjectTag("inputVolume")

    def _describeModel(self):
        custom = self._getCustomModel()
        return "custom (%s)" % os.path.basename(custom) if custom else self._getModelKind()


def _quote(arg):
    return "'%s'" % arg if any(c in arg for c in " \"'$&;()") else arg


def _machineHasGpu():
    """An NVIDIA GPU is visible to this process (the host that runs the step, also on a queue)."""
    gpus = "/proc/driver/nvidia/gpus"
    return os.path.isdir(gpus) and bool(os.listdir(gpus))
