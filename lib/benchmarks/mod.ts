/**
 * Continual-learning benchmarks: experiences and streams, generators (class-, task-, domain- and
 * new-instances incremental, online splits, subsampling), image transforms and the classic MNIST
 * benchmarks.
 *
 * @example Split MNIST in the natural class order
 * ```ts
 * import { splitMNIST } from "./mod.ts";
 * const b = await splitMNIST({ fixedClassOrder: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] });
 * for (const exp of b.train) console.log(exp.id, exp.classes, exp.dataset.length);
 * ```
 *
 * @module
 */
export * from "../data/experience.ts";
export * from "./generators.ts";
export * from "./transforms.ts";
export * from "./classic.ts";
export * from "./validation.ts";
export * from "./vision.ts";
