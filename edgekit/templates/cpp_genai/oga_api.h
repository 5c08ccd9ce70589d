// The part of ONNX Runtime GenAI's C API this app calls, declared here because the onnxruntime-genai wheel
// (which boards install with pip) ships the library, libonnxruntime-genai.so, without its header. The
// declarations follow the library's documented C API (functions return an OgaResult*, null on success).
// With the GenAI SDK's own ort_genai_c.h at hand, configure with -DOGA_HEADER=ort_genai_c.h to use it instead.
#pragma once

#ifdef OGA_HEADER
#include OGA_HEADER
#else
#include <cstddef>
#include <cstdint>

extern "C" {
typedef struct OgaResult OgaResult;
typedef struct OgaModel OgaModel;
typedef struct OgaGeneratorParams OgaGeneratorParams;
typedef struct OgaGenerator OgaGenerator;

const char* OgaResultGetError(const OgaResult* result);
void OgaDestroyResult(OgaResult* result);
OgaResult* OgaCreateModel(const char* config_path, OgaModel** out);
void OgaDestroyModel(OgaModel* model);
OgaResult* OgaCreateGeneratorParams(const OgaModel* model, OgaGeneratorParams** out);
void OgaDestroyGeneratorParams(OgaGeneratorParams* params);
OgaResult* OgaGeneratorParamsSetSearchNumber(OgaGeneratorParams* params, const char* name, double value);
OgaResult* OgaGeneratorParamsSetSearchBool(OgaGeneratorParams* params, const char* name, bool value);
OgaResult* OgaCreateGenerator(const OgaModel* model, const OgaGeneratorParams* params, OgaGenerator** out);
void OgaDestroyGenerator(OgaGenerator* generator);
bool OgaGenerator_IsDone(const OgaGenerator* generator);
OgaResult* OgaGenerator_AppendTokens(OgaGenerator* generator, const int32_t* input_ids, size_t count);
OgaResult* OgaGenerator_GenerateNextToken(OgaGenerator* generator);
OgaResult* OgaGenerator_GetNextTokens(const OgaGenerator* generator, const int32_t** out, size_t* out_count);
void OgaShutdown();
}
#endif
