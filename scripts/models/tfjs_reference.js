// Runs a TF.js graph model on TF.js's pure-JavaScript CPU backend (the reference the converted
// ONNX graph is compared with): node tfjs_reference.js MODEL.json INPUT.f32 d0,d1,.. OUT_PREFIX
// Writes each output as OUT_PREFIX<name>.f32 (raw little-endian float32).
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs-core');
require('@tensorflow/tfjs-backend-cpu');
const converter = require('@tensorflow/tfjs-converter');

(async () => {
  await tf.setBackend('cpu');
  const [modelJson, inputFile, dims, prefix] = process.argv.slice(2);
  const json = JSON.parse(fs.readFileSync(modelJson));
  const specs = json.weightsManifest.flatMap((g) => g.weights);
  const data = Buffer.concat(json.weightsManifest.flatMap((g) =>
    g.paths.map((p) => fs.readFileSync(path.join(path.dirname(modelJson), p)))));
  const model = await converter.loadGraphModel(tf.io.fromMemory({
    modelTopology: json.modelTopology,
    weightSpecs: specs,
    weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength),
    format: json.format,
    signature: json.signature,
  }));
  const raw = fs.readFileSync(inputFile);
  const x = tf.tensor(new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4),
    dims.split(',').map(Number));
  const names = Object.keys(json.signature.outputs);
  const outs = await model.executeAsync(x, names);
  for (let i = 0; i < names.length; i++) {
    const values = await outs[i].data();
    fs.writeFileSync(prefix + names[i].replace(/:0$/, '') + '.f32', Buffer.from(values.buffer));
  }
})();
