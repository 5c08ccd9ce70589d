// Runs this edgekit bundle with the ONNX Runtime C++ API: checks the shipped sample, then times it.
// Build: see CMakeLists.txt. Run from the build folder: ./edgekit_app ../../.. [model.ort|model.onnx]
#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "model_io.h"

static std::vector<char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

static ONNXTensorElementDataType element_type(const std::string& dtype) {
  if (dtype == "float32") return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  if (dtype == "int64") return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
  if (dtype == "int32") return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
  if (dtype == "uint8") return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
  throw std::runtime_error("unsupported input type " + dtype);
}

int main(int argc, char** argv) {
  const std::string root = argc > 1 ? argv[1] : ".";
  const std::string model = root + "/" + (argc > 2 ? argv[2] : kDefaultModel);
  Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "edgekit");
  Ort::SessionOptions options;
  options.SetIntraOpNumThreads(1);
  Ort::Session session(env, model.c_str(), options);
  auto memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);

  std::vector<std::vector<char>> buffers;
  buffers.reserve(kInputs.size());
  std::vector<Ort::Value> inputs;
  std::vector<const char*> input_names, output_names;
  for (const auto& spec : kInputs) {
    buffers.push_back(read_file(root + "/" + spec.sample));
    inputs.push_back(Ort::Value::CreateTensor(memory, buffers.back().data(), buffers.back().size(),
                                              spec.shape.data(), spec.shape.size(), element_type(spec.dtype)));
    input_names.push_back(spec.name);
  }
  for (const auto& spec : kOutputs) output_names.push_back(spec.name);
  auto run = [&] {
    return session.Run(Ort::RunOptions{nullptr}, input_names.data(), inputs.data(), inputs.size(),
                       output_names.data(), output_names.size());
  };

  auto outputs = run();
  auto expected_bytes = read_file(root + "/" + kOutputs[0].sample);
  const float* expected = reinterpret_cast<const float*>(expected_bytes.data());
  const float* got = outputs[0].GetTensorData<float>();
  size_t count = outputs[0].GetTensorTypeAndShapeInfo().GetElementCount();
  double max_diff = 0;
  for (size_t i = 0; i < count; ++i) max_diff = std::max(max_diff, std::fabs(double(got[i]) - expected[i]));
  size_t top = std::max_element(got, got + count) - got;
  size_t want = std::max_element(expected, expected + count) - expected;

  const int runs = 200;
  std::vector<double> ms;
  for (int i = 0; i < 20; ++i) run();
  for (int i = 0; i < runs; ++i) {
    auto start = std::chrono::steady_clock::now();
    run();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  std::printf("{\"model\": \"%s\", \"p50_ms\": %.4f, \"p99_ms\": %.4f, \"max_abs_diff\": %.6g, \"top1_match\": %s}\n",
              model.c_str(), ms[runs / 2], ms[runs * 99 / 100], max_diff, top == want ? "true" : "false");
  return max_diff < 1e-3 ? 0 : 1;
}
