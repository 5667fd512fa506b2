// Types of the refcast JavaScript package (js/index.js).

/** What went wrong; messages name the line, gene, field or limit and can be shown to people. */
export type ErrorKind =
  | 'format' // the model file is not a valid refcast model
  | 'sample' // the sample file cannot be used (the message names the line or gene)
  | 'metadata' // a context or perturbation the model does not know
  | 'request' // an inconsistent request (e.g. conditioning without a sample)
  | 'gpu' // WebGPU unavailable, device lost, out of memory
  | 'usage' // the API was called wrongly (unknown option, disposed model, …)
  | 'network' // the model could not be downloaded
  | 'checksum' // the model's SHA-256 is not the expected one
  | 'io'
  | 'internal';

export class RefcastError extends Error {
  readonly name: 'RefcastError';
  readonly kind: ErrorKind;
}

export type Backend = 'webgpu' | 'cpu';

/** Metadata fields of a prior network, by name: a vocabulary entry or a number. */
export type Metadata = Record<string, string | number>;

/** A known perturbation or context of the model. */
export interface Named {
  name: string;
  metadata: Metadata;
}

export interface CategoricalField {
  name: string;
  /** Vocabulary; entry 0 is "unknown". */
  values: string[];
}

export interface NumericField {
  name: string;
  transform: 'zscore' | 'log1p_zscore';
  mean: number;
  std: number;
  min: number;
  max: number;
  unit?: string | null;
}

export interface PriorSpec {
  categorical: CategoricalField[];
  numeric: NumericField[];
}

export type Group = 'technical' | 'biological' | 'perturbation';

/**
 * How a prediction from a sample is formed from the model's decoder (`decode(control)` being the
 * model's untreated control, both rows decoded from the sample's latents, the same draw when
 * sampling):
 * - `'denoised'` (default): the measured sample moved by the predicted change, its measurement
 *   noise removed: max(0, decode(perturbation) + soft(sample − decode(control), τ)), where
 *   soft(r, τ) = sign(r)·max(0, |r| − τ) per gene and τ is the model's per-gene threshold (at most
 *   1 ln unit, fit on its training pairs). The sample keeps its own profile, except that
 *   differences from the model's reconstruction smaller than τ (the noise of one measurement,
 *   which a separately measured perturbed sample would not share) are dropped; so the model's
 *   reconstruction error moves a fold change by at most τ. A model without thresholds (format 1
 *   or 2) gives the counterfactual profile here.
 * - `'counterfactual'`: the measured sample moved by the predicted change,
 *   max(0, sample + decode(perturbation) − decode(control)). The model's error in reconstructing
 *   the sample cancels whole, so genes the perturbation does not touch keep their measured values,
 *   measurement noise included.
 * - `'decoded'`: decode(perturbation), the decoder's own profile (its reconstruction error
 *   included).
 * In the denoised and counterfactual modes the sample stands for the control. Prompt-only
 * predictions (no sample) are always decoded.
 */
export type PredictionMode = 'denoised' | 'counterfactual' | 'decoded';

export interface ModelInfo {
  name: string;
  /** Number of genes; every prediction vector has this length (times its rows). */
  genes: number;
  latent: { technical: number; biological: number; perturbation: number };
  /** The metadata each prior network knows. */
  metadata: Record<Group, PriorSpec>;
  /** Known perturbations; `control` marks the untreated controls (a field set to "none"). */
  perturbations: Array<Named & { control: boolean }>;
  /** What to predict when nothing is named: the first perturbation that is not a control. */
  defaultPerturbation: string | null;
  contexts: Named[];
  provenance: unknown;
  /** Format 2: the encoder's covariates (`library_size`, from a sample's counts); empty in format 1. */
  covariates: NumericField[];
  /** How the model tells whether a sample resembles its training data; `null` when not calibrated. */
  familiarity: FamiliarityCalibration | null;
}

export interface FamiliarityCalibration {
  /** The training contexts whose centroids a sample is compared with. */
  contexts: string[];
  /** A sample farther than this from every centroid is outside. */
  maxDistance: number;
  /** A sample the model reconstructs with a lower R² is outside. */
  minReconstructionR2: number;
  /** How the thresholds were chosen, in words. */
  calibration: string;
}

/**
 * Whether a reference resembles the samples the model was trained on (one per reference of a
 * prediction or screen from a sample). Predictions for a sample `outside` are extrapolations.
 */
export interface Familiarity {
  /** The reference's name. */
  reference: string;
  /** Squared Pearson r between the sample and the model's decoded profile of it under the control, over its measured genes. */
  reconstructionR2: number;
  /** The nearest training context; `null` when the model has no familiarity calibration. */
  nearestContext: string | null;
  /** Distance of the sample's encoding to that context's centroid; `null` without a calibration. */
  distance: number | null;
  /** Whether the sample lies outside what the model was trained on; `null` without a calibration. */
  outside: boolean | null;
  /** Why it is outside, in plain words (empty when inside). */
  reasons: string[];
  /** One sentence for people: a warning when outside, else where the sample lies. */
  summary: string;
}

/** What a sample's values are: `log-cpm` is the natural log, ln(1 + CPM). */
export type ValueKind = 'counts' | 'log-cpm' | 'log2-cpm' | 'log10-cpm' | 'tpm' | 'fpkm' | 'cpm';

/**
 * A sample: TSV/CSV text, a `File`/`Blob` or bytes of such a file (first column genes as symbols
 * or Ensembl ids, then one value column per sample; header optional), or one profile as arrays.
 * Files may be gzip-compressed (decompressed with `DecompressionStream`), featureCounts output,
 * Salmon `quant.genes.sf` or kallisto `abundance.tsv`. A 10x Genomics Cell Ranger matrix
 * (`filtered_feature_bc_matrix/`: its three files, each plain or gzip) is summed over all cells into
 * one pseudobulk sample called `name`, or one per group of a barcode → group table (`groups`).
 */
export type SampleInput =
  | string
  | Blob
  | ArrayBuffer
  | ArrayBufferView
  | { genes: string[]; values: ArrayLike<number>; kind?: ValueKind }
  | { matrix: FileData; features: FileData; barcodes: FileData; groups?: FileData; name?: string };

/** The contents of one file. */
export type FileData = string | Blob | ArrayBuffer | ArrayBufferView;

export interface SampleOptions {
  /**
   * What the values are; `auto` (default) decides from the header or the values (a log base only
   * when exactly one fits, else the call rejects asking for it).
   */
  values?: 'auto' | ValueKind;
  /** Which value column of the file: position (default 0) or header name. */
  column?: number | string;
  /** The file's name: a lone value column with a generic header ("count", "log_cpm") is then named after it. */
  fileName?: string;
}

/** A sample matched to the model's genes. */
export interface ReferenceInfo {
  name: string;
  /** Sum of counts; 10⁶ for log-CPM input. */
  librarySize: number;
  valueKind: ValueKind;
  /** What the file was read as (format, value kind and how it was decided, gzip), one line. */
  interpretation: string;
  /** Names of the file's value columns. */
  columns: string[];
  /** Gene rows in the file. */
  rows: number;
  /** `[genes]` log-CPM in model gene order (the model's gene mean where unmeasured). */
  logCpm: Float32Array;
  /** `[genes]` 1 where the sample measured the gene. */
  measured: Uint8Array;
  matched: number;
  missing: number;
  unknown: number;
  unknownExamples: string[];
  /** The match summary as a sentence. */
  report: string;
}

export interface PredictRequest extends SampleOptions {
  /** The reference sample; leave out for prompt-only generation from `contexts`. */
  sample?: SampleInput | null;
  /**
   * Several value columns of the sample file as references of one batched prediction (instead of
   * `column`): `'all'`, or positions and header names. Rows then run over every reference.
   */
  columns?: 'all' | Array<number | string>;
  /** Known perturbations by name (see `info().perturbations`), or metadata objects. */
  perturbations?: string | Metadata | Array<string | Metadata>;
  /** Same as `perturbations` (one). */
  perturbation?: string | Metadata;
  /** Context (known name or metadata) used by the priors of groups not conditioned on. */
  context?: string | Metadata;
  /** One context per prompt-only prediction. */
  contexts?: Array<string | Metadata>;
  /** Latent groups taken from the sample; default both technical and biological (none without a sample). */
  conditionOn?: Array<'technical' | 'biological'>;
  /** Draw this many samples of the latents instead of using their means. */
  numSamples?: number;
  /** Seed of the draws (a whole number below 2⁵³); default 0. */
  seed?: number;
  /**
   * For a log-CPM sample: the library size (reads) its values were computed from, so that a model
   * with a depth covariate knows the sequencing depth (a counts sample has its own). Without a
   * sample: the library size of the predicted counts (default 10⁶).
   */
  librarySize?: number;
  /** How the prediction is formed from a sample: `'denoised'` (default), `'counterfactual'` or `'decoded'`; see `PredictionMode`. */
  mode?: PredictionMode;
  /**
   * What `logFoldChange` is measured against: the measured sample (`'reference'`) or the model's
   * prediction for its control (`'control'`). Default: the reference in the denoised and
   * counterfactual modes (where the two are the same), the control in the decoded mode where the
   * model has one.
   */
  baseline?: Baseline;
  /** Also list each row's `top` largest increases and decreases over the measured genes (`Prediction.top`). */
  top?: number;
}

export type Baseline = 'reference' | 'control';

/** Mirrors the Rust `Prediction`: one row per (draw, reference, perturbation), in that nesting order. */
export interface Prediction {
  genes: number;
  /** What the sample file was read as (one line); `null` for prompt-only generation. */
  interpretation: string | null;
  rows: Array<{ reference: number; perturbation: number; sample: number }>;
  /** `[rows × genes]` predicted log-CPM (natural log of CPM + 1), formed as `mode` says. */
  logCpm: Float32Array;
  /** `[rows × genes]` expected counts at the reference's library size. */
  counts: Float32Array;
  /**
   * `[rows × genes]` predicted − reference log-CPM, a natural-log fold change; `null` for prompt-only generation. In the
   * counterfactual mode this is the predicted change itself (decode(perturbation) − decode(control),
   * except where the profile was floored at 0); in the denoised mode it differs from that change by
   * at most the gene's threshold τ.
   */
  logFoldChange: Float32Array | null;
  /** The units of `logFoldChange`: "ln fold change" (natural log; log2 = ln / ln 2). */
  foldChangeUnits: string;
  /** `[rows × latentWidth]` latents fed to the decoder. */
  latents: Float32Array;
  latentWidth: number;
  /** `[genes]` σ of the model's Normal likelihood on log-CPM. */
  sigma: Float32Array;
  /** The perturbations of the request, resolved (indexed by `rows[i].perturbation`). */
  perturbations: Named[];
  /** How `logCpm` was formed: the request's mode, or `'decoded'` for prompt-only generation. */
  mode: PredictionMode;
  /** Settings without effect and combinations the model never saw, in words (e.g. a context field of a group taken from the sample). */
  warnings: string[];
  /** What `logFoldChange` is measured against; `null` when there are no fold changes. */
  baseline: Baseline | null;
  /** With `top`: per row, its largest increases and decreases, largest first. */
  top?: Array<{ topUp: GeneEffect[]; topDown: GeneEffect[] }>;
  /** The first (or only) reference; `null` for prompt-only generation. */
  reference: ReferenceInfo | null;
  /** Every reference, indexed by `rows[i].reference` (empty for prompt-only generation). */
  references: ReferenceInfo[];
  /** One per reference (empty for prompt-only generation or a model without a control perturbation). */
  familiarity: Familiarity[];
  backend: Backend;
  timings: { predictMs: number };
}

export interface ScreenRequest extends SampleOptions {
  sample: SampleInput;
  context?: string | Metadata;
  /** Default: every perturbation the model knows. */
  perturbations?: string | Metadata | Array<string | Metadata>;
  /**
   * A signature to reverse: up and down gene sets (reversal = mean LFC of the down genes − mean
   * LFC of the up genes), a list of genes (an up set), or gene → weight (> 0 up in the disease
   * state, < 0 down; finite; reversal −Σ w·LFC / Σ |w|).
   */
  signature?: { up?: string[]; down?: string[] } | string[] | Record<string, number> | Map<string, number>;
  /** How each perturbation's profile is formed: `'denoised'` (default), `'counterfactual'` or `'decoded'`; see `PredictionMode`. */
  mode?: PredictionMode;
  /** For a log-CPM sample: the library size its values were computed from. */
  librarySize?: number;
  /** What effects are measured against; default as in `PredictRequest.baseline`. */
  baseline?: Baseline;
  /** Latent groups taken from the sample; default both. */
  conditionOn?: Array<'technical' | 'biological'>;
  /** Called as chunks of perturbations finish. */
  onProgress?: (done: number, total: number) => void;
  /**
   * Rank by a gene set's activity (needs `loadGeneSets`): `'pathway:JAK-STAT'`, `'go:GO:0051607'`;
   * highest activity first.
   */
  rankBy?: string;
  /** Give each hit its pathways' scores (`enrichment`; needs `loadGeneSets`). */
  pathways?: boolean;
  /** Give each hit every gene set's score (the GO terms that move most too; needs `loadGeneSets`). */
  allSets?: boolean;
}

export interface GeneEffect {
  index: number;
  gene: string;
  logFoldChange: number;
}

export interface ScreenHit {
  name: string;
  metadata: Metadata;
  /**
   * Root mean square of the predicted natural-log fold change (`foldChangeUnits`) over the
   * measured genes. Hits are ranked by it when the screen has no signature.
   */
  effectSize: number;
  /**
   * −Σ w·LFC / Σ |w| over the signature's genes the model knows (LFC: predicted ln fold
   * change): positive when the perturbation moves them against the signature. Hits are ranked by
   * it when the screen has a signature; null without one.
   */
  reversal: number | null;
  topUp: GeneEffect[];
  topDown: GeneEffect[];
  /** With `pathways` or `allSets`: the pathways' scores (with `allSets` also the GO terms that move most). */
  enrichment?: GeneSetScore[];
  /** After `loadGeneSets`: the `rankBy` set's ULM t-value (null without `rankBy`). */
  activity?: number | null;
}

/** A gene-set file's collections, as `loadGeneSets` read them. */
export interface GeneSetsInfo {
  collections: Array<{ name: 'progeny' | 'go_bp' | string; title: string; method: string; sets: number }>;
  /** The packages the sets were built from (name, version, archive SHA-256, licence). */
  sources: unknown;
  /** The PROGENy pathways (for `rankBy: 'pathway:' + id`). */
  pathways: Array<{ id: string; name: string }>;
}

/** One gene set's score against a prediction (a line of the CLI's `--enrichment` file). */
export interface GeneSetScore {
  /** `progeny` (PROGENy pathway activity) or `go_bp` (GO biological process). */
  collection: string;
  /** The pathway's name or the GO id. */
  id: string;
  name: string;
  /** decoupler's ULM t-value of the ln fold changes on the set's weights; > 0: the set goes up. */
  score: number;
  /** Two-sided p-value of the t-value. */
  pValue: number;
  /** Benjamini–Hochberg FDR within the collection. */
  fdr: number;
  /** The set's genes the sample measured. */
  size: number;
  /** The genes contributing most in the score's direction, with their ln fold change. */
  leading: GeneEffect[];
}

export interface EnrichmentResult {
  /** Each collection of the file, its sets highest score first. */
  collections: Array<{ name: string; title: string; method: string; sets: GeneSetScore[] }>;
  /** The `progeny` collection's sets (pathway activities), highest first. */
  pathways: GeneSetScore[];
  /** The `go_bp` collection's sets (GO biological process), highest first. */
  terms: GeneSetScore[];
  /** What each field means, in the library's words (the CLI's `--enrichment` columns). */
  legend: Array<{ column: string; meaning: string }>;
  /** "ln fold change". */
  foldChangeUnits: string;
}

export interface EnrichmentOptions {
  /** The prediction's row (default 0). */
  row?: number;
  /** With fold changes given directly: 0/1 per gene, the genes measured (default every gene). */
  measured?: ArrayLike<number>;
}

/** The model described for people (`refcast info --json`'s card); see `src/card.rs`. */
export interface ModelCard {
  name: string;
  /** What the model is and predicts, in one paragraph. */
  description: string;
  genes: number;
  latents: string;
  networks: string;
  activation: string;
  /** How the weights are stored, e.g. `{ encoding: '8-bit blocks (Q8_0)', dtype: 'Q8_0', parameters: 12824576 }`. */
  weights: Array<{ encoding: string; dtype: string; parameters: number }>;
  values: string;
  fold_change_units: string;
  datasets: Array<{ name: string; source: string; size: string | null; licence: string | null; links: string[] }>;
  training: Array<{ dataset: string; contexts: number; units: number }>;
  perturbations: Array<{ class: string; entries: number; settings: string; agents: Array<{ name: string; entries: number; settings: string; measured_in: string[] }> }>;
  perturbation_count: number;
  contexts: Array<{ source: string; contexts: string[] }>;
  context_count: number;
  /** Only when the model file carries its evaluation. */
  evaluation: unknown | null;
  training_source: string | null;
  notes: string | null;
}

/** One column of a screen's table and what it means. */
export interface ScreenColumn {
  column: 'rank' | 'perturbation' | 'effect_size' | 'reversal' | 'top_up' | 'top_down' | 'activity';
  meaning: string;
}

export interface ScreenResult {
  /** Best first: by reversal when a signature is given, else by effect size. */
  hits: ScreenHit[];
  /** The table's columns and what each means, the same legend as the CLI's. */
  legend: ScreenColumn[];
  /** The units of every fold change: "ln fold change" (natural log; log2 = ln / ln 2). */
  foldChangeUnits: string;
  reference: ReferenceInfo;
  /** What the sample file was read as (one line). */
  interpretation: string;
  /** The reference's familiarity (one entry; none for a model without a control perturbation). */
  familiarity: Familiarity[];
  /** The signature's genes the model does not know, left out of the reversal scores. */
  signatureUnknown: string[];
  /** Settings without effect, in words. */
  warnings: string[];
  mode: PredictionMode;
  /** What the effects were measured against. */
  baseline: Baseline;
  /** After `loadGeneSets`: the set ranked by (`progeny:JAK-STAT`), or null. */
  rankedBy?: string | null;
  backend: Backend;
  timings: { screenMs: number };
}

export interface LoadOptions {
  /**
   * `auto` (default): WebGPU when `navigator.gpu` gives a hardware adapter, else the CPU (a
   * software adapter such as SwiftShader is slower than the CPU backend); `backendReason` says why.
   */
  backend?: 'auto' | Backend;
  /**
   * How the CPU backend (chosen, or the fallback of `auto`) multiplies quantized weights: `f32`
   * (default: the weights decoded to f32) or `integer` (inputs quantized to 16-bit blocks and
   * multiplied in integer arithmetic; predicted log-CPM within 0.02 of `f32`, at about the same
   * speed in the wasm build).
   */
  cpuKernels?: 'f32' | 'integer';
  /** Expected SHA-256 of the model file (hex); checked with `crypto.subtle`. */
  sha256?: string;
  /** Download progress, for URLs. */
  onProgress?: (loaded: number, total: number) => void;
  /** Where to get the WebAssembly module, if not beside the JS (see `init`). */
  wasm?: WasmSource;
}

export type WasmSource = string | URL | Response | BufferSource | WebAssembly.Module;

/** Loads the WebAssembly module (once); `Refcast.load` calls it. */
export function init(source?: WasmSource): Promise<void>;

/** A model loaded on a backend. Calls on one model run one after another. */
export class Refcast {
  private constructor();
  /** Loads a model from a URL or the bytes of a `.safetensors` file. */
  static load(source: string | URL | Blob | ArrayBuffer | ArrayBufferView, options?: LoadOptions): Promise<Refcast>;
  /** The backend that runs this model. */
  readonly backend: Backend;
  /** The adapter, for people. */
  readonly adapter: string;
  /** Why this backend was chosen (e.g. why `auto` fell back to the CPU). */
  readonly backendReason: string;
  /** Milliseconds from `load` to ready (download, checksum, parse, upload). */
  readonly loadMs: number;
  /** Gene symbols in model order. */
  readonly genes: string[];
  /** Ensembl ids in model order. */
  readonly ensembl: Array<string | null>;
  info(): ModelInfo;
  /** The model described for people: the same card as `refcast info --json`. */
  card(): ModelCard;
  /** Parses and matches a sample without predicting (to show file errors early). The model
   * keeps the last sample it read: later calls on the same bytes, read the same way, skip it. */
  inspectSample(sample: SampleInput, options?: SampleOptions): Promise<ReferenceInfo>;
  predict(request: PredictRequest): Promise<Prediction>;
  screen(request: ScreenRequest): Promise<ScreenResult>;
  /** Reads the gene sets (`refcast-genesets.safetensors` beside the model) for `enrichment` and screens. */
  loadGeneSets(source: string | URL | Blob | ArrayBuffer | ArrayBufferView, options?: { sha256?: string; onProgress?: (loaded: number, total: number) => void }): Promise<GeneSetsInfo>;
  /** Scores a prediction row (or fold changes, one per gene) against every gene set: the CLI's `--enrichment`. */
  enrichment(prediction: Prediction | ArrayLike<number>, options?: EnrichmentOptions): EnrichmentResult;
  /** Releases the model and, on WebGPU, its device. Later calls reject. */
  dispose(): void;
}

/** The full prediction as TSV, in the columns of `refcast predict`. */
export function predictionToTsv(prediction: Prediction, genes: string[]): string;

export default Refcast;

/** Options of {@link readHdf5Sample} and {@link pseudobulkHdf5}. */
export interface Hdf5SampleOptions {
  /** The file's name: names the one sample when the cells are not grouped. */
  fileName?: string;
  /** AnnData: the obs column whose values group the cells (one sample each). */
  groupby?: string;
  /** AnnData: the matrix of raw counts: `'X'`, `'raw'` or a layer's name (default: .raw, else X). */
  layer?: string;
  /** AnnData: the var column holding gene names (default: the var index). */
  geneNames?: string;
}

/** An HDF5 sample's cells summed into a counts table. */
export interface Hdf5Sample {
  /** The counts table (TSV): pass it as the sample of `predict`, `screen` or `inspectSample`. */
  text: string;
  /** What the file was read as, e.g. "an AnnData file, 6 cells of raw/X summed into 1 pseudobulk sample". */
  description: string;
  /** The samples' names (the groups, or the file's name). */
  samples: string[];
  /** AnnData: the obs columns to group by. */
  obsColumns: string[];
  /** AnnData: the matrices to read counts from (layers, `raw`, `X`). */
  layers: string[];
}

/** Whether bytes start with HDF5's signature. */
export function isHdf5(bytes: Uint8Array): boolean;
/**
 * Reads an AnnData .h5ad or 10x Genomics .h5 file with jsfive and sums its cells' raw counts
 * (AnnData: .raw, else X when whole numbers, or `layer`; all cells, or by `groupby`). Throws
 * with a clear message on normalized values, a missing column or layer, or another HDF5 file.
 */
export function readHdf5Sample(bytes: Uint8Array | ArrayBuffer, options?: Hdf5SampleOptions): Promise<Hdf5Sample>;
/** {@link readHdf5Sample} on a file jsfive has opened (as the page's worker does). */
export function pseudobulkHdf5(file: unknown, options?: Hdf5SampleOptions): Omit<Hdf5Sample, 'layers'>;
