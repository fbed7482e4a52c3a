//===- WeightStore.h - Weight bytes kept outside the IR ---------*- C++ -*-===//
//
// `kiln.weight` ops name their bytes; the store maps those names to views of
// the mmap-ed model (or to buffers the importer made) until serialization
// copies them into the artifact.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_COMPILER_WEIGHTSTORE_H
#define KILN_COMPILER_WEIGHTSTORE_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/MemoryBuffer.h"

#include <memory>
#include <vector>

namespace kiln {

class WeightStore {
public:
  /// Registers a view; the caller keeps the bytes alive (see keepAlive).
  void addView(llvm::StringRef name, llvm::ArrayRef<char> bytes) {
    weights[name] = bytes;
  }
  /// Registers bytes the store owns.
  void addOwned(llvm::StringRef name, std::vector<char> bytes) {
    auto owned = std::make_shared<std::vector<char>>(std::move(bytes));
    owners.push_back(owned);
    weights[name] = llvm::ArrayRef<char>(owned->data(), owned->size());
  }
  void keepAlive(std::shared_ptr<const void> owner) {
    owners.push_back(std::move(owner));
  }
  bool contains(llvm::StringRef name) const { return weights.count(name); }
  llvm::ArrayRef<char> lookup(llvm::StringRef name) const {
    return weights.lookup(name);
  }

private:
  llvm::StringMap<llvm::ArrayRef<char>> weights;
  std::vector<std::shared_ptr<const void>> owners;
};

} // namespace kiln

#endif // KILN_COMPILER_WEIGHTSTORE_H
