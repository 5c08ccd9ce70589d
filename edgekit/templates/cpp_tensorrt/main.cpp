// Runs this edgekit bundle's engine with the TensorRT C++ runtime: checks the shipped sample, then times it.
// Needs model.engine from ./build_engine.sh on this board. Run: ./edgekit_app ../.. [model.engine]
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model_io.h"

class Logger : public nvinfer1::ILogger {
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kWARNING) std::fprintf(stderr, "%s\n", msg);
  }
};

static std::vector<char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

static void check(cudaError_t err) {
  if (err != cudaSuccess) throw std::runtime_error(cudaGetErrorString(err));
}

static size_t element_count(const std::vector<int64_t>& shape) {
  size_t n = 1;
  for (auto d : shape) n *= static_cast<size_t>(d);
  return n;
}

int main(int argc, char** argv) {
  const std::string root = argc > 1 ? argv[1] : ".";
  const std::string engine_path = root + "/" + (argc > 2 ? argv[2] : "model.engine");
  Logger logger;
  auto blob = read_file(engine_path);
  std::unique_ptr<nvinfer1::IRuntime> runtime(nvinfer1::createInferRuntime(logger));
  std::unique_ptr<nvinfer1::ICudaEngine> engine(runtime->deserializeCudaEngine(blob.data(), blob.size()));
  if (!engine) {
    std::fprintf(stderr, "%s does not load: rebuild it on this board with ./build_engine.sh\n", engine_path.c_str());
    return 2;
  }
  std::unique_ptr<nvinfer1::IExecutionContext> context(engine->createExecutionContext());
  cudaStream_t stream;
  check(cudaStreamCreate(&stream));
  std::map<std::string, void*> device;
  for (const auto& spec : kInputs) {
    auto host = read_file(root + "/" + spec.sample);
    nvinfer1::Dims dims;
    dims.nbDims = static_cast<int>(spec.shape.size());
    for (int i = 0; i < dims.nbDims; ++i) dims.d[i] = spec.shape[i];
    context->setInputShape(spec.name, dims);
    check(cudaMalloc(&device[spec.name], host.size()));
    check(cudaMemcpy(device[spec.name], host.data(), host.size(), cudaMemcpyHostToDevice));
    context->setTensorAddress(spec.name, device[spec.name]);
  }
  for (const auto& spec : kOutputs) {
    check(cudaMalloc(&device[spec.name], element_count(spec.shape) * sizeof(float)));
    context->setTensorAddress(spec.name, device[spec.name]);
  }
  auto run = [&] {
    context->enqueueV3(stream);
    check(cudaStreamSynchronize(stream));
  };
  run();
  std::vector<float> got(element_count(kOutputs[0].shape));
  check(cudaMemcpy(got.data(), device[kOutputs[0].name], got.size() * sizeof(float), cudaMemcpyDeviceToHost));
  auto expected_bytes = read_file(root + "/" + kOutputs[0].sample);
  const float* expected = reinterpret_cast<const float*>(expected_bytes.data());
  double max_diff = 0;
  for (size_t i = 0; i < got.size(); ++i) max_diff = std::max(max_diff, std::fabs(double(got[i]) - expected[i]));
  bool top1 = (std::max_element(got.begin(), got.end()) - got.begin()) ==
              (std::max_element(expected, expected + got.size()) - expected);

  const int runs = 200;
  std::vector<double> ms;
  for (int i = 0; i < 50; ++i) run();
  for (int i = 0; i < runs; ++i) {
    auto start = std::chrono::steady_clock::now();
    run();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  std::printf("{\"engine\": \"%s\", \"p50_ms\": %.4f, \"p99_ms\": %.4f, \"max_abs_diff\": %.6g, \"top1_match\": %s}\n",
              engine_path.c_str(), ms[runs / 2], ms[runs * 99 / 100], max_diff, top1 ? "true" : "false");
  for (auto& kv : device) cudaFree(kv.second);
  cudaStreamDestroy(stream);
  return 0;
}
