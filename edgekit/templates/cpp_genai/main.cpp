// Example app for this edgekit language-model bundle, on ONNX Runtime GenAI's C API. It first generates
// greedily from the prompt in reference.json and compares the tokens with the ones the host generated at
// compress time, then times generation (time to first token, prefill and decode tokens per second: medians
// over --runs, after one untimed run) and prints one JSON line, as apps/python/run_genai.py --json does.
//   ./build/edgekit_genai_app BUNDLE_DIR [--runs 3] [--prompt-tokens 128] [--new-tokens 128]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "oga_api.h"

namespace {

using Clock = std::chrono::steady_clock;

void ok(OgaResult* result) {
  if (result != nullptr) {
    std::fprintf(stderr, "onnxruntime-genai: %s\n", OgaResultGetError(result));
    OgaDestroyResult(result);
    std::exit(1);
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "cannot read %s: run this app with the bundle's folder as its argument\n", path.c_str());
    std::exit(2);
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The value after "key": in edgekit's own JSON files (flat, written by edgekit), without a JSON library.
std::string value_of(const std::string& json, const std::string& key) {
  const size_t at = json.find("\"" + key + "\"");
  if (at == std::string::npos) return "";
  const size_t start = json.find(':', at) + 1;
  if (json.find('[', start) == json.find_first_not_of(" \n\t", start)) {
    return json.substr(json.find('[', start) + 1, json.find(']', start) - json.find('[', start) - 1);
  }
  return json.substr(start, json.find_first_of(",}\n", start) - start);
}

std::vector<int32_t> int_list(const std::string& json, const std::string& key) {
  std::vector<int32_t> values;
  std::stringstream items(value_of(json, key));
  for (std::string item; std::getline(items, item, ',');) {
    if (item.find_first_of("0123456789") != std::string::npos) values.push_back(std::stoi(item));
  }
  return values;
}

OgaGenerator* start(const OgaModel* model, const std::vector<int32_t>& prompt, size_t new_tokens) {
  OgaGeneratorParams* params = nullptr;
  ok(OgaCreateGeneratorParams(model, &params));
  const double length = static_cast<double>(prompt.size() + new_tokens);
  ok(OgaGeneratorParamsSetSearchNumber(params, "max_length", length));
  ok(OgaGeneratorParamsSetSearchNumber(params, "min_length", length));  // every run makes as many tokens
  ok(OgaGeneratorParamsSetSearchBool(params, "do_sample", false));
  OgaGenerator* generator = nullptr;
  ok(OgaCreateGenerator(model, params, &generator));
  OgaDestroyGeneratorParams(params);
  ok(OgaGenerator_AppendTokens(generator, prompt.data(), prompt.size()));
  return generator;
}

int32_t next_token(OgaGenerator* generator) {
  ok(OgaGenerator_GenerateNextToken(generator));
  const int32_t* tokens = nullptr;
  size_t count = 0;
  ok(OgaGenerator_GetNextTokens(generator, &tokens, &count));
  return tokens[0];
}

std::vector<int32_t> greedy(const OgaModel* model, const std::vector<int32_t>& prompt, size_t new_tokens) {
  OgaGenerator* generator = start(model, prompt, new_tokens);
  std::vector<int32_t> tokens;
  while (!OgaGenerator_IsDone(generator)) tokens.push_back(next_token(generator));
  OgaDestroyGenerator(generator);
  return tokens;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

double peak_rss_mib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0.0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s BUNDLE_DIR [--runs N] [--prompt-tokens N] [--new-tokens N]\n", argv[0]);
    return 2;
  }
  const std::string bundle = argv[1];
  int runs = 3;
  size_t prompt_tokens = 128, new_tokens = 128;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const long value = std::atol(argv[i + 1]);
    if (flag == "--runs") runs = std::max(1L, value);
    else if (flag == "--prompt-tokens") prompt_tokens = static_cast<size_t>(std::max(1L, value));
    else if (flag == "--new-tokens") new_tokens = static_cast<size_t>(std::max(1L, value));
  }
  const std::string reference = read_file(bundle + "/reference.json");
  const std::vector<int32_t> prompt_ids = int_list(reference, "prompt_ids");
  const std::vector<int32_t> want = int_list(reference, "greedy_tokens");
  if (prompt_ids.empty() || want.empty()) {
    std::fprintf(stderr, "%s/reference.json holds no prompt_ids or greedy_tokens: pack the bundle with edgekit\n",
                 bundle.c_str());
    return 2;
  }
  const std::string context_text = value_of(read_file(bundle + "/genai_config.json"), "context_length");
  const size_t context = context_text.empty() ? 4096 : static_cast<size_t>(std::stol(context_text));
  new_tokens = std::min(new_tokens, context / 4);
  prompt_tokens = std::min(prompt_tokens, context - new_tokens);

  OgaModel* model = nullptr;
  ok(OgaCreateModel(bundle.c_str(), &model));
  const std::vector<int32_t> got = greedy(model, prompt_ids, want.size());
  size_t same = 0;
  while (same < got.size() && same < want.size() && got[same] == want[same]) ++same;

  std::vector<int32_t> prompt;
  while (prompt.size() < prompt_tokens) prompt.push_back(prompt_ids[prompt.size() % prompt_ids.size()]);
  std::vector<double> ttft, decode;
  for (int run = 0; run <= runs; ++run) {  // the first run warms up and is not counted
    const auto begin = Clock::now();
    OgaGenerator* generator = start(model, prompt, new_tokens);
    next_token(generator);
    const auto first = Clock::now();
    size_t steps = 0;
    for (; !OgaGenerator_IsDone(generator); ++steps) next_token(generator);
    const auto end = Clock::now();
    OgaDestroyGenerator(generator);
    if (run == 0) continue;
    ttft.push_back(std::chrono::duration<double>(first - begin).count());
    decode.push_back(steps / std::max(std::chrono::duration<double>(end - first).count(), 1e-9));
  }
  OgaDestroyModel(model);
  const double first_s = median(ttft);
  std::printf("{\"runtime\": \"onnxruntime-genai C API\", \"check\": {\"reference_match\": %s, \"matched_tokens\": %zu, "
              "\"tokens\": %zu}, \"ttft_ms\": %.3f, \"prefill_tok_s\": %.3f, \"decode_tok_s\": %.3f, "
              "\"prompt_tokens\": %zu, \"new_tokens\": %zu, \"runs\": %d, \"peak_rss_mib\": %.1f}\n",
              got == want ? "true" : "false", same, want.size(), 1000.0 * first_s, prompt.size() / first_s,
              median(decode), prompt.size(), new_tokens, runs, peak_rss_mib());
  OgaShutdown();
  return got == want ? 0 : 1;
}
