/**
 * Registers tfjs' gradient functions. `@tensorflow/tfjs-core` ships them only as extension-less
 * ES modules that Deno cannot load, while the union package's Node build registers them (into
 * the registry shared by every copy of tfjs-core) when imported.
 *
 * @module
 */
import "@tensorflow/tfjs";
