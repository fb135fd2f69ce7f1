/**
 * Experiences and streams: the units a continual learner sees one after another.
 *
 * @module
 */
import type { Dataset } from "./dataset.ts";

/** The kind of shift between experiences. */
export type Scenario =
  | "class-incremental"
  | "task-incremental"
  | "domain-incremental"
  | "new-instances";

/** One step of a stream: a dataset plus what a strategy may know about it. */
export interface Experience {
  /** Position in its stream (0-based). */
  readonly id: number;
  /** Name of the stream it belongs to, e.g. "train" or "test". */
  readonly stream: string;
  /** The task label of the experience (the first one when it holds several). */
  readonly taskLabel: number;
  /** All task labels present. */
  readonly taskLabels: readonly number[];
  /** Class labels present (as the model sees them, after any remapping). */
  readonly classes: readonly number[];
  /** The samples. */
  readonly dataset: Dataset;
  /** Facts about the benchmark it came from. */
  readonly info: BenchmarkInfo;
}

/** Facts shared by every experience of a benchmark. */
export interface BenchmarkInfo {
  /** Benchmark name, e.g. "SplitMNIST". */
  readonly name: string;
  readonly scenario: Scenario;
  /** Number of distinct class labels the model must output (per head for task-incremental with remapping). */
  readonly numClasses: number;
  /** Shape of one input sample. */
  readonly inputShape: readonly number[];
  /** Number of experiences in the training stream. */
  readonly numExperiences: number;
}

/** An ordered list of experiences with a name. */
export interface Stream extends ReadonlyArray<Experience> {
  readonly name: string;
}

/** A benchmark: a training stream and a test stream of the same length (and maybe a validation one). */
export interface Benchmark {
  readonly info: BenchmarkInfo;
  readonly train: Stream;
  readonly test: Stream;
  /**
   * Samples held out of each training experience, experience by experience (stream name
   * `"valid"`), when the benchmark has them (`benchmarkWithValidationStream`).
   */
  readonly valid?: Stream;
  /** Classes of each training experience, in stream order. */
  readonly classesPerExperience: readonly (readonly number[])[];
  /** For class-incremental benchmarks: the original class of each position in the order used. */
  readonly classOrder?: readonly number[];
}

/** Makes a named stream from experiences. */
export function makeStream(name: string, experiences: Experience[]): Stream {
  return Object.assign([...experiences], { name }) as unknown as Stream;
}

/** Builds an experience of a stream from a dataset, deriving classes and task labels from it. */
export function makeExperience(
  stream: string,
  id: number,
  dataset: Dataset,
  info: BenchmarkInfo,
): Experience {
  if (dataset.length === 0) {
    throw new RangeError(`Experience ${id} of stream "${stream}" of ${info.name} is empty`);
  }
  const taskLabels = dataset.tasks();
  return {
    id,
    stream,
    taskLabel: taskLabels[0],
    taskLabels,
    classes: dataset.classes(),
    dataset,
    info,
  };
}

/**
 * The experience `e` with another dataset (a subset of its own, typically): classes and task
 * labels are derived again, every other field (extra ones included) is kept.
 */
export function withDataset<E extends Experience>(e: E, dataset: Dataset): E {
  const base = makeExperience(e.stream, e.id, dataset, e.info);
  return {
    ...e,
    taskLabel: base.taskLabel,
    taskLabels: base.taskLabels,
    classes: base.classes,
    dataset,
  };
}
