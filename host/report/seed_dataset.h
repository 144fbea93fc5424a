// The exact data one seed trains and is tested on, as .npy files and a dataset.json: `bench_spurious dataset`.
#pragma once
#include <cstdint>
#include <string>

#include "data/data.h"
#include "study/study.h"

namespace sb {

// Writes x_train.npy (D_sp of seed seed_index), y_train.npy, planted_train.npy, the three test sets, their labels and
// planted classes, and dataset.json into out_dir, through a staging folder next to it: on an error nothing is left.
void write_seed_dataset(const StudyConfig& cfg, const Dataset& data, uint32_t seed_index, const std::string& out_dir);

}  // namespace sb
