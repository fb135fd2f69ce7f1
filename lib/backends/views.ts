/**
 * Row views: a tensor whose values are rows of another tensor, sharing its memory instead of
 * copying it, on the WebAssembly heap backends ("wasm", "blas").
 *
 * tfjs gives every tensor its own allocation (a slice copies). A view is registered with the
 * wasm backend at an address inside its source's allocation, and the backend's `disposeData` is
 * wrapped (once per backend instance) so that disposing a view releases its record and its hold
 * on the source, never the memory. The source's memory stays valid while any view of it is
 * alive, even when the source tensor itself is disposed first.
 *
 * Kernels only read their inputs, so a view is as good as a copy for every kernel; what it
 * saves is the copy. (`tf.memory().numBytes` counts a view's bytes as a copy's.) Evaluation
 * minibatches of a dataset held on the heap (`lib/engine/resident.ts`) are views: a 256×784 float
 * batch costs no conversion and no 800 KB write, and the first product reads the rows straight
 * from the dataset.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { HEAP_BACKENDS } from "./fused.ts";

interface TensorRecord {
  id: number;
  memoryOffset: number;
  refCount: number;
}

/** The parts of tfjs-backend-wasm's backend used here. */
interface WasmBackend {
  wasm: { tfjs: { disposeData(id: number): void } };
  /** tfjs' DataStorage: `get` of an id it lacks moves the data from another backend. */
  dataIdMap: {
    has(dataId: tf.DataId): boolean;
    get(dataId: tf.DataId): TensorRecord | undefined;
    delete(dataId: tf.DataId): boolean;
  };
  makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number): tf.TensorInfo;
  incRef(dataId: tf.DataId): void;
  disposeData(dataId: tf.DataId, force?: boolean): boolean;
}

/** View data id → its source's data id. */
const sources = new WeakMap<object, tf.DataId>();
/** Backends whose `disposeData` knows views. */
const wrapped = new WeakSet<object>();

function wrapDispose(be: WasmBackend): void {
  if (wrapped.has(be)) return;
  wrapped.add(be);
  const dispose = be.disposeData.bind(be);
  be.disposeData = (dataId: tf.DataId, force = false): boolean => {
    const source = sources.get(dataId as object);
    if (source === undefined) return dispose(dataId, force);
    if (!be.dataIdMap.has(dataId)) return true;
    const rec = be.dataIdMap.get(dataId)!;
    rec.refCount--;
    if (!force && rec.refCount > 0) return false;
    be.wasm.tfjs.disposeData(rec.id);
    be.dataIdMap.delete(dataId);
    sources.delete(dataId as object);
    // Release the view's hold on its source. When the source tensor was disposed while views
    // were alive, the engine still lists its data: drop that entry with the memory.
    if (dispose(source) && !be.dataIdMap.has(source)) {
      const engine = tf.engine() as unknown as {
        removeDataId?(dataId: tf.DataId, backend: unknown): void;
      };
      engine.removeDataId?.(source, be);
    }
    return true;
  };
}

/** True when `t`'s data lives on the active backend and that backend is a heap backend. */
function heapBackendOf(t: tf.Tensor): WasmBackend | undefined {
  if (!HEAP_BACKENDS.has(tf.getBackend())) return undefined;
  const be = tf.backend() as unknown as WasmBackend;
  return be.dataIdMap.has(t.dataId) ? be : undefined;
}

/**
 * Rows `start .. start + rows - 1` of `source` (a float32 tensor of rank ≥ 1, split along its
 * first axis) as a tensor sharing `source`'s memory, of shape `[rows, ...source.shape.slice(1)]`.
 * Undefined unless the active backend is "wasm" or "blas" and holds `source`. The caller
 * disposes of the view as of any tensor; nothing must write into it.
 */
export function rowsView(source: tf.Tensor, start: number, rows: number): tf.Tensor | undefined {
  if (source.isDisposed) throw new Error("rowsView: the source tensor is disposed");
  if (source.rank < 1 || source.dtype !== "float32") {
    throw new TypeError(
      `rowsView: the source must be a float32 tensor of rank ≥ 1, got ${source.dtype} of shape [${source.shape}]`,
    );
  }
  const n = source.shape[0];
  if (
    !Number.isInteger(start) || !Number.isInteger(rows) || start < 0 || rows < 1 || start + rows > n
  ) {
    throw new RangeError(
      `rowsView: rows ${start} to ${start + rows - 1} are outside the source's ${n} rows`,
    );
  }
  const be = heapBackendOf(source);
  if (!be) return undefined;
  wrapDispose(be);
  const rowSize = source.size / n;
  const offset = be.dataIdMap.get(source.dataId)!.memoryOffset + start * rowSize * 4;
  const shape = [rows, ...source.shape.slice(1)];
  const info = be.makeOutput(shape, "float32", offset);
  sources.set(info.dataId as object, source.dataId);
  be.incRef(source.dataId);
  return tf.engine().makeTensorFromTensorInfo(info);
}
