// The Vulkan driver: libvulkan.so.1 through dlopen and a symbol table (no
// link dependency), one compute queue, SPIR-V pipelines made at load,
// weights uploaded once. A call binds its buffers, records every dispatch
// of the function into one command buffer with barriers between them, and
// waits once: no host round trip between kernels.
#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#include "device.h"
#include "drivers/gpu_profile.h"
#include "status.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>

using kiln::rt::makeStatus;
namespace fb = kiln::fb;

namespace {

#define KILN_VK_FUNCTIONS(X)                                                   \
  X(vkDestroyInstance) X(vkEnumeratePhysicalDevices)                           \
  X(vkGetPhysicalDeviceProperties) X(vkGetPhysicalDeviceQueueFamilyProperties) \
  X(vkGetPhysicalDeviceMemoryProperties) X(vkCreateDevice) X(vkDestroyDevice)  \
  X(vkGetDeviceQueue) X(vkCreateBuffer) X(vkDestroyBuffer)                     \
  X(vkGetBufferMemoryRequirements) X(vkAllocateMemory) X(vkFreeMemory)         \
  X(vkBindBufferMemory) X(vkMapMemory) X(vkUnmapMemory)                        \
  X(vkCreateShaderModule) X(vkDestroyShaderModule)                             \
  X(vkCreateDescriptorSetLayout) X(vkDestroyDescriptorSetLayout)               \
  X(vkCreatePipelineLayout) X(vkDestroyPipelineLayout)                         \
  X(vkCreateComputePipelines) X(vkDestroyPipeline)                             \
  X(vkCreateDescriptorPool) X(vkDestroyDescriptorPool)                         \
  X(vkAllocateDescriptorSets) X(vkUpdateDescriptorSets)                        \
  X(vkCreateCommandPool) X(vkDestroyCommandPool)                               \
  X(vkAllocateCommandBuffers) X(vkBeginCommandBuffer) X(vkEndCommandBuffer)    \
  X(vkCmdBindPipeline) X(vkCmdBindDescriptorSets) X(vkCmdDispatch)             \
  X(vkCmdPipelineBarrier) X(vkQueueSubmit) X(vkQueueWaitIdle)                  \
  X(vkResetCommandPool) X(vkResetDescriptorPool)                             \
  X(vkGetPhysicalDeviceFeatures2) X(vkFreeCommandBuffers)                     \
  X(vkGetPhysicalDeviceProperties2) X(vkCmdCopyBuffer)                         \
  X(vkCreateQueryPool) X(vkDestroyQueryPool) X(vkCmdResetQueryPool)            \
  X(vkCmdWriteTimestamp) X(vkGetQueryPoolResults)

struct Vk {
  void *lib = nullptr;
  PFN_vkGetInstanceProcAddr getInstanceProcAddr = nullptr;
  PFN_vkCreateInstance createInstance = nullptr;
#define KILN_VK_MEMBER(name) PFN_##name name = nullptr;
  KILN_VK_FUNCTIONS(KILN_VK_MEMBER)
#undef KILN_VK_MEMBER
};

/// A Vulkan info struct, zeroed, with its type set.
template <class T> T make(VkStructureType type) {
  T v{};
  v.sType = type;
  return v;
}

struct Buffer {
  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceMemory memory = VK_NULL_HANDLE;
  void *mapped = nullptr;
  uint64_t size = 0;
};

/// The device features Kiln's SPIR-V capabilities map to, chained for
/// vkGetPhysicalDeviceFeatures2 / VkDeviceCreateInfo (not copyable: the
/// chain points into itself).
struct Features {
  VkPhysicalDeviceFeatures2 base = make<VkPhysicalDeviceFeatures2>(
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2);
  VkPhysicalDeviceShaderFloat16Int8Features f16i8 =
      make<VkPhysicalDeviceShaderFloat16Int8Features>(
          VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES);
  VkPhysicalDevice8BitStorageFeatures s8 =
      make<VkPhysicalDevice8BitStorageFeatures>(
          VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES);
  VkPhysicalDevice16BitStorageFeatures s16 =
      make<VkPhysicalDevice16BitStorageFeatures>(
          VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES);
  Features() {
    base.pNext = &f16i8;
    f16i8.pNext = &s8;
    s8.pNext = &s16;
  }
  Features(const Features &) = delete;
  Features &operator=(const Features &) = delete;
};

struct Kernel {
  VkShaderModule module = VK_NULL_HANDLE;
  VkDescriptorSetLayout setLayout = VK_NULL_HANDLE;
  VkPipelineLayout layout = VK_NULL_HANDLE;
  VkPipeline pipeline = VK_NULL_HANDLE;
  uint32_t bindings = 0;
};

std::string vkError(VkResult r) {
  switch (r) {
  case VK_ERROR_OUT_OF_HOST_MEMORY: return "out of host memory";
  case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "out of device memory";
  case VK_ERROR_INITIALIZATION_FAILED: return "initialization failed";
  case VK_ERROR_DEVICE_LOST: return "device lost";
  case VK_ERROR_INCOMPATIBLE_DRIVER: return "incompatible driver";
  default: return "VkResult " + std::to_string(static_cast<int>(r));
  }
}

class VulkanDevice final : public kiln::rt::Device {
public:
  ~VulkanDevice() override {
    profile.print("vulkan", deviceName);
    if (device) {
      vk.vkQueueWaitIdle(queue);
      for (Kernel &k : kernels) {
        vk.vkDestroyPipeline(device, k.pipeline, nullptr);
        vk.vkDestroyPipelineLayout(device, k.layout, nullptr);
        vk.vkDestroyDescriptorSetLayout(device, k.setLayout, nullptr);
        vk.vkDestroyShaderModule(device, k.module, nullptr);
      }
      for (Buffer &b : constants)
        release(b);
      if (kvCache.buffer)
        release(kvCache);
      for (auto &[impl, rec] : recorded)
        destroy(rec);
      vk.vkDestroyCommandPool(device, commandPool, nullptr);
      vk.vkDestroyDevice(device, nullptr);
    }
    if (instance)
      vk.vkDestroyInstance(instance, nullptr);
    if (vk.lib)
      dlclose(vk.lib);
  }

  kiln_status init(const kiln_artifact *a, const fb::Target *target,
                   int ordinal) {
    artifact = a;
    this->target = target;
    vk.lib = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!vk.lib)
      return makeStatus(KILN_UNAVAILABLE,
                        "no Vulkan loader: cannot load libvulkan.so.1 (install "
                        "a Vulkan driver, e.g. mesa-vulkan-drivers)");
    vk.getInstanceProcAddr = reinterpret_cast<PFN_vkGetInstanceProcAddr>(
        dlsym(vk.lib, "vkGetInstanceProcAddr"));
    if (!vk.getInstanceProcAddr)
      return makeStatus(KILN_UNAVAILABLE,
                        "libvulkan.so.1 lacks vkGetInstanceProcAddr");
    vk.createInstance = reinterpret_cast<PFN_vkCreateInstance>(
        vk.getInstanceProcAddr(nullptr, "vkCreateInstance"));
    auto app = make<VkApplicationInfo>(VK_STRUCTURE_TYPE_APPLICATION_INFO);
    app.pApplicationName = "kiln";
    app.apiVersion = VK_API_VERSION_1_3;
    auto ici = make<VkInstanceCreateInfo>(VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO);
    ici.pApplicationInfo = &app;
    if (VkResult r = vk.createInstance(&ici, nullptr, &instance))
      return makeStatus(KILN_UNAVAILABLE, "vkCreateInstance failed: %s",
                        vkError(r).c_str());
#define KILN_VK_LOAD(name)                                                     \
  vk.name = reinterpret_cast<PFN_##name>(                                      \
      vk.getInstanceProcAddr(instance, #name));                                \
  if (!vk.name)                                                                \
    return makeStatus(KILN_UNAVAILABLE, "the Vulkan loader lacks " #name);
    KILN_VK_FUNCTIONS(KILN_VK_LOAD)
#undef KILN_VK_LOAD

    uint32_t count = 0;
    vk.vkEnumeratePhysicalDevices(instance, &count, nullptr);
    if (count == 0)
      return makeStatus(KILN_UNAVAILABLE, "no Vulkan device");
    std::vector<VkPhysicalDevice> devices(count);
    vk.vkEnumeratePhysicalDevices(instance, &count, devices.data());
    if (ordinal < 0 || static_cast<uint32_t>(ordinal) >= count)
      return makeStatus(KILN_NOT_FOUND, "no Vulkan device %d (there are %u)",
                        ordinal, count);
    physical = devices[ordinal];
    VkPhysicalDeviceProperties props;
    vk.vkGetPhysicalDeviceProperties(physical, &props);
    deviceName = props.deviceName;
    limits = props.limits;
    // The version the device runs for this instance (apiVersion 1.3 asked).
    deviceApiVersion = std::min(props.apiVersion, VK_API_VERSION_1_3);
    // A test hook: KILN_VULKAN_MAX_STORAGE_BUFFERS=N pretends the device
    // allows only N storage buffers per kernel.
    if (const char *m = getenv("KILN_VULKAN_MAX_STORAGE_BUFFERS"))
      limits.maxPerStageDescriptorStorageBuffers = std::min<uint32_t>(
          limits.maxPerStageDescriptorStorageBuffers, strtoul(m, nullptr, 10));
    vk.vkGetPhysicalDeviceMemoryProperties(physical, &memoryProps);

    uint32_t families = 0;
    vk.vkGetPhysicalDeviceQueueFamilyProperties(physical, &families, nullptr);
    std::vector<VkQueueFamilyProperties> fams(families);
    vk.vkGetPhysicalDeviceQueueFamilyProperties(physical, &families,
                                                fams.data());
    uint32_t family = UINT32_MAX;
    for (uint32_t i = 0; i < families && family == UINT32_MAX; ++i)
      if (fams[i].queueFlags & VK_QUEUE_COMPUTE_BIT)
        family = i;
    if (family == UINT32_MAX)
      return makeStatus(KILN_UNAVAILABLE,
                        "Vulkan device '%s' has no compute queue",
                        deviceName.c_str());
    float priority = 1.0f;
    auto qci = make<VkDeviceQueueCreateInfo>(VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO);
    qci.queueFamilyIndex = family;
    qci.queueCount = 1;
    qci.pQueuePriorities = &priority;
    // The features the kernels' SPIR-V capabilities need: each is checked
    // (a missing one is named) and enabled.
    Features have, want;
    vk.vkGetPhysicalDeviceFeatures2(physical, &have.base);
    // A test hook: KILN_VULKAN_HIDE_FEATURES=Float16,Int64 pretends the
    // device lacks those capabilities.
    std::string hidden = ",";
    if (const char *h = getenv("KILN_VULKAN_HIDE_FEATURES"))
      hidden += std::string(h) + ",";
    // Subgroup operations are properties, not features: checked, not
    // enabled.
    auto subgroup = make<VkPhysicalDeviceSubgroupProperties>(
        VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES);
    auto props2 = make<VkPhysicalDeviceProperties2>(
        VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2);
    props2.pNext = &subgroup;
    vk.vkGetPhysicalDeviceProperties2(physical, &props2);
    bool computeSubgroups =
        subgroup.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT;
    if (const auto *reqs = target->requirements())
      for (const flatbuffers::String *req : *reqs) {
        std::string cap = req->str();
        struct SubgroupOps {
          const char *cap, *bit;
          VkSubgroupFeatureFlags flag;
        } ops[] = {
            {"GroupNonUniform", "VK_SUBGROUP_FEATURE_BASIC_BIT",
             VK_SUBGROUP_FEATURE_BASIC_BIT},
            {"GroupNonUniformArithmetic", "VK_SUBGROUP_FEATURE_ARITHMETIC_BIT",
             VK_SUBGROUP_FEATURE_ARITHMETIC_BIT},
        };
        const SubgroupOps *op = nullptr;
        for (const SubgroupOps &o : ops)
          if (cap == o.cap)
            op = &o;
        if (op) {
          if (!computeSubgroups || !(subgroup.supportedOperations & op->flag) ||
              hidden.find("," + cap + ",") != std::string::npos)
            return makeStatus(KILN_UNAVAILABLE,
                              "Vulkan device '%s' lacks %s (subgroup "
                              "operations %s in compute shaders), which the "
                              "artifact's kernels use",
                              deviceName.c_str(), cap.c_str(), op->bit);
          continue;
        }
        struct Feature {
          const char *cap, *feature;
          VkBool32 *want, have;
        } table[] = {
            {"Int64", "shaderInt64", &want.base.features.shaderInt64,
             have.base.features.shaderInt64},
            {"Int16", "shaderInt16", &want.base.features.shaderInt16,
             have.base.features.shaderInt16},
            {"Float64", "shaderFloat64", &want.base.features.shaderFloat64,
             have.base.features.shaderFloat64},
            {"Float16", "shaderFloat16", &want.f16i8.shaderFloat16,
             have.f16i8.shaderFloat16},
            {"Int8", "shaderInt8", &want.f16i8.shaderInt8, have.f16i8.shaderInt8},
            {"StorageBuffer8BitAccess", "storageBuffer8BitAccess",
             &want.s8.storageBuffer8BitAccess, have.s8.storageBuffer8BitAccess},
            {"StorageBuffer16BitAccess", "storageBuffer16BitAccess",
             &want.s16.storageBuffer16BitAccess,
             have.s16.storageBuffer16BitAccess},
        };
        const Feature *f = nullptr;
        for (const Feature &t : table)
          if (cap == t.cap)
            f = &t;
        if (!f)
          return makeStatus(KILN_UNIMPLEMENTED,
                            "the artifact's Vulkan kernels need SPIR-V "
                            "capability %s, which this runtime cannot enable",
                            cap.c_str());
        if (!f->have || hidden.find("," + cap + ",") != std::string::npos)
          return makeStatus(KILN_UNAVAILABLE,
                            "Vulkan device '%s' lacks %s (feature %s), which "
                            "the artifact's kernels use",
                            deviceName.c_str(), cap.c_str(), f->feature);
        *f->want = VK_TRUE;
      }
    // 8-bit storage and float16/int8 are core from Vulkan 1.2; a 1.1
    // device has them as extensions.
    std::vector<const char *> extensions;
    if (VK_API_VERSION_MINOR(props.apiVersion) < 2 &&
        VK_API_VERSION_MAJOR(props.apiVersion) == 1) {
      if (want.s8.storageBuffer8BitAccess)
        extensions.push_back("VK_KHR_8bit_storage");
      if (want.f16i8.shaderFloat16 || want.f16i8.shaderInt8)
        extensions.push_back("VK_KHR_shader_float16_int8");
    }
    auto dci = make<VkDeviceCreateInfo>(VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO);
    dci.pNext = &want.base;
    dci.queueCreateInfoCount = 1;
    dci.pQueueCreateInfos = &qci;
    dci.enabledExtensionCount = static_cast<uint32_t>(extensions.size());
    dci.ppEnabledExtensionNames = extensions.data();
    if (VkResult r = vk.vkCreateDevice(physical, &dci, nullptr, &device))
      return makeStatus(KILN_UNAVAILABLE, "vkCreateDevice on '%s' failed: %s",
                        deviceName.c_str(), vkError(r).c_str());
    vk.vkGetDeviceQueue(device, family, 0, &queue);
    auto cpi = make<VkCommandPoolCreateInfo>(VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO);
    cpi.queueFamilyIndex = family;
    if (VkResult r = vk.vkCreateCommandPool(device, &cpi, nullptr, &commandPool))
      return makeStatus(KILN_INTERNAL, "vkCreateCommandPool: %s",
                        vkError(r).c_str());

    KILN_RETURN_IF_ERROR(createPipelines());
    // Weights, uploaded once into device-local memory (through a staging
    // buffer when the host cannot map it: a discrete GPU).
    // KILN_VULKAN_STAGING=1 takes the staging path on any device (tests).
    forceStaging = getenv("KILN_VULKAN_STAGING") != nullptr;
    profiling = getenv("KILN_VULKAN_PROFILE") != nullptr;
    for (const fb::Constant *c : *a->model->constants()) {
      Buffer b;
      uint64_t size = a->segmentSize(c->segment());
      KILN_RETURN_IF_ERROR(allocate(size, b, Memory::Device));
      constants.push_back(b);
      KILN_RETURN_IF_ERROR(upload(b, a->segment(c->segment()), size));
    }
    return nullptr;
  }

  kiln_status run(const fb::FunctionImpl *impl,
                  const kiln::rt::CallBuffers &buffers) override {
    const fb::Function *f = artifact->model->functions()->Get(impl->function());
    size_t numIn = f->inputs()->size(), numOut = f->outputs()->size();
    // A function's buffers, descriptor sets and command buffer are made
    // and recorded on its first call and replayed after: a call copies its
    // inputs in, submits once, waits once and copies the outputs out.
    auto it = recorded.find(impl);
    bool stale = it != recorded.end() &&
                 (!sameSizes(it->second.inputs, buffers.inputs, numIn) ||
                  !sameSizes(it->second.outputs, buffers.outputs, numOut));
    if (stale) {
      destroy(it->second);
      recorded.erase(it);
      it = recorded.end();
    }
    if (it == recorded.end()) {
      Recorded rec;
      kiln_status st = record(impl, buffers, numIn, numOut, rec);
      if (st) {
        destroy(rec);
        return st;
      }
      it = recorded.emplace(impl, std::move(rec)).first;
    }
    Recorded &rec = it->second;
    for (size_t i = 0; i < numIn; ++i)
      std::memcpy(rec.inputs[i].mapped, buffers.inputs[i].data,
                  buffers.inputs[i].size_bytes);
    auto submit = make<VkSubmitInfo>(VK_STRUCTURE_TYPE_SUBMIT_INFO);
    submit.commandBufferCount = 1;
    submit.pCommandBuffers = &rec.cmd;
    if (VkResult r = vk.vkQueueSubmit(queue, 1, &submit, VK_NULL_HANDLE))
      return makeStatus(KILN_INTERNAL, "vkQueueSubmit: %s", vkError(r).c_str());
    if (VkResult r = vk.vkQueueWaitIdle(queue))
      return makeStatus(KILN_INTERNAL, "vkQueueWaitIdle: %s",
                        vkError(r).c_str());
    for (size_t i = 0; i < numOut; ++i)
      std::memcpy(buffers.outputs[i].data, rec.outputs[i].mapped,
                  buffers.outputs[i].size_bytes);
    if (rec.queries) {
      uint32_t n = impl->dispatches()->size();
      std::vector<uint64_t> stamps(2 * n);
      if (vk.vkGetQueryPoolResults(device, rec.queries, 0, 2 * n,
                                   stamps.size() * 8, stamps.data(), 8,
                                   VK_QUERY_RESULT_64_BIT |
                                       VK_QUERY_RESULT_WAIT_BIT) == VK_SUCCESS)
        for (uint32_t i = 0; i < n; ++i)
          profile.add(impl, i,
                      double(stamps[2 * i + 1] - stamps[2 * i]) *
                          limits.timestampPeriod * 1e-6);
    }
    return nullptr;
  }

private:
  /// One function's device state, kept across calls.
  struct Recorded {
    std::vector<Buffer> inputs, outputs, temps;
    VkDescriptorPool pool = VK_NULL_HANDLE;
    VkCommandBuffer cmd = VK_NULL_HANDLE;
    /// KILN_VULKAN_PROFILE: two timestamps per dispatch.
    VkQueryPool queries = VK_NULL_HANDLE;
  };

  /// KILN_VULKAN_PROFILE=1: GPU time per dispatch (timestamp queries).
  kiln::rt::DispatchProfile profile;
  bool profiling = false;

  static bool sameSizes(const std::vector<Buffer> &have, const kiln_tensor *t,
                        size_t n) {
    if (have.size() != n)
      return false;
    for (size_t i = 0; i < n; ++i)
      if (have[i].size != std::max<uint64_t>(4, t[i].size_bytes))
        return false;
    return true;
  }

  void destroy(Recorded &rec) {
    for (auto *l : {&rec.inputs, &rec.outputs, &rec.temps})
      for (Buffer &b : *l)
        release(b);
    if (rec.cmd)
      vk.vkFreeCommandBuffers(device, commandPool, 1, &rec.cmd);
    if (rec.pool)
      vk.vkDestroyDescriptorPool(device, rec.pool, nullptr);
    if (rec.queries)
      vk.vkDestroyQueryPool(device, rec.queries, nullptr);
    rec = Recorded();
  }

  /// Makes `impl`'s buffers and descriptor sets and records its dispatches
  /// into one command buffer, a barrier between dispatches.
  kiln_status record(const fb::FunctionImpl *impl,
                     const kiln::rt::CallBuffers &buffers, size_t numIn,
                     size_t numOut, Recorded &rec) {
    rec.inputs.resize(numIn);
    rec.outputs.resize(numOut);
    for (size_t i = 0; i < numIn; ++i)
      KILN_RETURN_IF_ERROR(allocate(
          std::max<uint64_t>(4, buffers.inputs[i].size_bytes), rec.inputs[i]));
    for (size_t i = 0; i < numOut; ++i)
      KILN_RETURN_IF_ERROR(allocate(
          std::max<uint64_t>(4, buffers.outputs[i].size_bytes), rec.outputs[i]));
    if (impl->temporaries())
      for (uint64_t bytes : *impl->temporaries()) {
        rec.temps.emplace_back();
        KILN_RETURN_IF_ERROR(allocate(std::max<uint64_t>(4, bytes),
                                      rec.temps.back(), Memory::Device));
      }
    kiln::rt::GpuBuffers<Buffer> bound{rec.inputs, rec.outputs, constants,
                                       rec.temps};
    // The LLM session's paged KV cache lives on the device, made on first
    // use; the block table and step inputs address it on every call.
    if (buffers.kvCache) {
      if (!kvCache.buffer) {
        const fb::KvCacheSpec *spec = artifact->model->kv_cache();
        if (!spec)
          return makeStatus(KILN_DATA_LOSS, "a KV cache binding without a "
                                            "KV cache spec");
        KILN_RETURN_IF_ERROR(allocate(kiln::rt::kvCachePoolBytes(spec),
                                      kvCache, Memory::Device));
      }
      bound.kvCache = &kvCache;
    }
    uint32_t numDispatches = impl->dispatches()->size();
    uint32_t numDescriptors = 0;
    for (const fb::Dispatch *d : *impl->dispatches())
      numDescriptors += d->bindings()->size();
    VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                              std::max(numDescriptors, 1u)};
    auto pci = make<VkDescriptorPoolCreateInfo>(VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO);
    pci.maxSets = std::max(numDispatches, 1u);
    pci.poolSizeCount = 1;
    pci.pPoolSizes = &size;
    if (VkResult r = vk.vkCreateDescriptorPool(device, &pci, nullptr, &rec.pool))
      return makeStatus(KILN_INTERNAL, "vkCreateDescriptorPool: %s",
                        vkError(r).c_str());
    auto cai = make<VkCommandBufferAllocateInfo>(VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO);
    cai.commandPool = commandPool;
    cai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    cai.commandBufferCount = 1;
    if (VkResult r = vk.vkAllocateCommandBuffers(device, &cai, &rec.cmd)) {
      rec.cmd = VK_NULL_HANDLE;
      return makeStatus(KILN_INTERNAL, "vkAllocateCommandBuffers: %s",
                        vkError(r).c_str());
    }
    VkCommandBuffer cmd = rec.cmd;
    auto begin = make<VkCommandBufferBeginInfo>(VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO);
    vk.vkBeginCommandBuffer(cmd, &begin);
    if (profiling && numDispatches) {
      auto qci = make<VkQueryPoolCreateInfo>(VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO);
      qci.queryType = VK_QUERY_TYPE_TIMESTAMP;
      qci.queryCount = 2 * numDispatches;
      if (VkResult r = vk.vkCreateQueryPool(device, &qci, nullptr, &rec.queries))
        return makeStatus(KILN_INTERNAL, "vkCreateQueryPool: %s",
                          vkError(r).c_str());
      vk.vkCmdResetQueryPool(cmd, rec.queries, 0, 2 * numDispatches);
    }
    uint32_t dispatchIndex = 0;
    for (const fb::Dispatch *d : *impl->dispatches()) {
      uint32_t exe = d->executable();
      if (exe >= kernels.size() || !d->workgroups() ||
          d->workgroups()->size() != 3)
        return makeStatus(KILN_DATA_LOSS, "a vulkan dispatch is malformed");
      for (int i = 0; i < 3; ++i)
        if (d->workgroups()->Get(i) > limits.maxComputeWorkGroupCount[i])
          return makeStatus(KILN_UNAVAILABLE,
                            "vulkan kernel %u needs %u workgroups in "
                            "dimension %d; device '%s' allows %u",
                            exe, d->workgroups()->Get(i), i,
                            deviceName.c_str(),
                            limits.maxComputeWorkGroupCount[i]);
      Kernel &k = kernels[exe];
      auto dai = make<VkDescriptorSetAllocateInfo>(VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO);
      dai.descriptorPool = rec.pool;
      dai.descriptorSetCount = 1;
      dai.pSetLayouts = &k.setLayout;
      VkDescriptorSet set;
      if (VkResult r = vk.vkAllocateDescriptorSets(device, &dai, &set))
        return makeStatus(KILN_INTERNAL, "vkAllocateDescriptorSets: %s",
                          vkError(r).c_str());
      if (d->bindings()->size() != k.bindings)
        return makeStatus(KILN_DATA_LOSS,
                          "a vulkan dispatch binds %u buffers, its kernel %u",
                          d->bindings()->size(), k.bindings);
      std::vector<VkDescriptorBufferInfo> infos(k.bindings);
      std::vector<VkWriteDescriptorSet> writes(k.bindings);
      for (uint32_t i = 0; i < k.bindings; ++i) {
        const fb::Binding *b = d->bindings()->Get(i);
        const Buffer *buf = bound.find(b);
        if (!buf)
          return makeStatus(KILN_DATA_LOSS,
                            "a vulkan binding (%s %u) is malformed",
                            fb::EnumNameBindingKind(b->kind()), b->index());
        infos[i] = {buf->buffer, 0, VK_WHOLE_SIZE};
        writes[i] = make<VkWriteDescriptorSet>(VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET);
        writes[i].dstSet = set;
        writes[i].dstBinding = i;
        writes[i].descriptorCount = 1;
        writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
        writes[i].pBufferInfo = &infos[i];
      }
      vk.vkUpdateDescriptorSets(device, k.bindings, writes.data(), 0, nullptr);
      vk.vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, k.pipeline);
      vk.vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, k.layout,
                                 0, 1, &set, 0, nullptr);
      if (rec.queries)
        vk.vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                               rec.queries, 2 * dispatchIndex);
      vk.vkCmdDispatch(cmd, d->workgroups()->Get(0), d->workgroups()->Get(1),
                       d->workgroups()->Get(2));
      if (rec.queries) {
        vk.vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                               rec.queries, 2 * dispatchIndex + 1);
        profile.describe(artifact, impl, dispatchIndex, d);
      }
      ++dispatchIndex;
      // The next kernel reads what this one wrote.
      auto barrier = make<VkMemoryBarrier>(VK_STRUCTURE_TYPE_MEMORY_BARRIER);
      barrier.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
      barrier.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                              VK_ACCESS_HOST_READ_BIT;
      vk.vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                              VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT |
                                  VK_PIPELINE_STAGE_HOST_BIT,
                              0, 1, &barrier, 0, nullptr, 0, nullptr);
    }
    if (VkResult r = vk.vkEndCommandBuffer(cmd))
      return makeStatus(KILN_INTERNAL, "vkEndCommandBuffer: %s",
                        vkError(r).c_str());
    return nullptr;
  }

  kiln_status createPipelines() {
    for (uint32_t e = 0; e < target->executables()->size(); ++e) {
      const fb::Executable *exe = target->executables()->Get(e);
      if (exe->format() != fb::ExecutableFormat::Spirv ||
          exe->kernels()->size() != 1)
        return makeStatus(KILN_DATA_LOSS,
                          "vulkan executable %u is not one SPIR-V kernel", e);
      // SPIR-V 1.N: Vulkan 1.1 consumes up to 1.3, 1.2 up to 1.5, 1.3 1.6.
      unsigned spirvMinor = 3;
      if (exe->arch() && exe->arch()->str().rfind("spirv1.", 0) == 0)
        spirvMinor = unsigned(atoi(exe->arch()->c_str() + 7));
      unsigned vkMinor = VK_API_VERSION_MINOR(deviceApiVersion);
      unsigned consumes = vkMinor >= 3 ? 6 : vkMinor == 2 ? 5 : 3;
      if (spirvMinor > consumes)
        return makeStatus(KILN_UNAVAILABLE,
                          "the artifact's Vulkan kernels are SPIR-V 1.%u; "
                          "device '%s' (Vulkan 1.%u) consumes up to 1.%u",
                          spirvMinor, deviceName.c_str(), vkMinor, consumes);
      const uint8_t *code = artifact->segment(exe->image_segment());
      uint64_t size = artifact->segmentSize(exe->image_segment());
      if (size % 4 || kiln::rt::fnv1a(code, size) != exe->image_hash())
        return makeStatus(KILN_DATA_LOSS,
                          "artifact '%s' is corrupt: vulkan kernel %u does not "
                          "match its checksum",
                          artifact->path.c_str(), e);
      // The kernel's buffer count: the largest binding any dispatch uses.
      Kernel k;
      for (const fb::FunctionImpl *impl : *target->functions())
        for (const fb::Dispatch *d : *impl->dispatches())
          if (d->executable() == e)
            k.bindings = std::max(k.bindings, d->bindings()->size());
      if (k.bindings > limits.maxPerStageDescriptorStorageBuffers)
        return makeStatus(KILN_UNAVAILABLE,
                          "vulkan kernel %u binds %u storage buffers; device "
                          "'%s' allows %u per stage "
                          "(maxPerStageDescriptorStorageBuffers)",
                          e, k.bindings, deviceName.c_str(),
                          limits.maxPerStageDescriptorStorageBuffers);
      // SPIR-V words must be 4-byte aligned: segments are 64-byte aligned.
      auto smi = make<VkShaderModuleCreateInfo>(VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO);
      smi.codeSize = size;
      smi.pCode = reinterpret_cast<const uint32_t *>(code);
      if (VkResult r = vk.vkCreateShaderModule(device, &smi, nullptr, &k.module))
        return makeStatus(KILN_DATA_LOSS, "vulkan kernel %u: %s", e,
                          vkError(r).c_str());
      std::vector<VkDescriptorSetLayoutBinding> binds(k.bindings);
      for (uint32_t i = 0; i < k.bindings; ++i)
        binds[i] = {i, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1,
                    VK_SHADER_STAGE_COMPUTE_BIT, nullptr};
      auto dli = make<VkDescriptorSetLayoutCreateInfo>(
          VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO);
      dli.bindingCount = k.bindings;
      dli.pBindings = binds.data();
      vk.vkCreateDescriptorSetLayout(device, &dli, nullptr, &k.setLayout);
      auto pli = make<VkPipelineLayoutCreateInfo>(VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO);
      pli.setLayoutCount = 1;
      pli.pSetLayouts = &k.setLayout;
      vk.vkCreatePipelineLayout(device, &pli, nullptr, &k.layout);
      auto cpi = make<VkComputePipelineCreateInfo>(VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO);
      cpi.stage = make<VkPipelineShaderStageCreateInfo>(
          VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO);
      cpi.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
      cpi.stage.module = k.module;
      cpi.stage.pName = exe->kernels()->Get(0)->c_str();
      cpi.layout = k.layout;
      if (VkResult r = vk.vkCreateComputePipelines(device, VK_NULL_HANDLE, 1,
                                                   &cpi, nullptr, &k.pipeline))
        return makeStatus(KILN_DATA_LOSS, "vulkan kernel '%s': %s",
                          cpi.stage.pName, vkError(r).c_str());
      kernels.push_back(k);
    }
    return nullptr;
  }



  /// Where a buffer lives: inputs and outputs in host-visible memory the
  /// host copies to and from on every call; weights, temporaries and the
  /// KV cache in device-local memory (mapped too where the device's local
  /// memory is host-visible, as on integrated GPUs and lavapipe).
  enum class Memory { Host, Device };

  /// The first memory type `bits` allows with all of `flags`, or UINT32_MAX.
  uint32_t memoryType(uint32_t bits, VkMemoryPropertyFlags flags) const {
    for (uint32_t i = 0; i < memoryProps.memoryTypeCount; ++i)
      if ((bits & (1u << i)) &&
          (memoryProps.memoryTypes[i].propertyFlags & flags) == flags)
        return i;
    return UINT32_MAX;
  }

  /// A storage buffer (also a copy source and destination).
  kiln_status allocate(uint64_t size, Buffer &b, Memory where = Memory::Host) {
    auto bci = make<VkBufferCreateInfo>(VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO);
    bci.size = size;
    bci.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT |
                VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                VK_BUFFER_USAGE_TRANSFER_DST_BIT;
    bci.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    if (VkResult r = vk.vkCreateBuffer(device, &bci, nullptr, &b.buffer))
      return makeStatus(KILN_UNAVAILABLE, "cannot create a %llu-byte buffer: %s",
                        static_cast<unsigned long long>(size),
                        vkError(r).c_str());
    VkMemoryRequirements req;
    vk.vkGetBufferMemoryRequirements(device, b.buffer, &req);
    const VkMemoryPropertyFlags hostFlags =
        VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    uint32_t type = UINT32_MAX;
    if (where == Memory::Device)
      type = memoryType(req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
    if (type == UINT32_MAX)
      type = memoryType(req.memoryTypeBits, hostFlags);
    if (type == UINT32_MAX)
      return makeStatus(KILN_UNAVAILABLE,
                        "Vulkan device '%s' has no memory type for a storage "
                        "buffer", deviceName.c_str());
    auto mai = make<VkMemoryAllocateInfo>(VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO);
    mai.allocationSize = req.size;
    mai.memoryTypeIndex = type;
    if (VkResult r = vk.vkAllocateMemory(device, &mai, nullptr, &b.memory))
      return makeStatus(KILN_UNAVAILABLE,
                        "out of device memory: %llu bytes on '%s' (%s)",
                        static_cast<unsigned long long>(size),
                        deviceName.c_str(), vkError(r).c_str());
    vk.vkBindBufferMemory(device, b.buffer, b.memory, 0);
    VkMemoryPropertyFlags got = memoryProps.memoryTypes[type].propertyFlags;
    bool mappable = (got & hostFlags) == hostFlags &&
                    !(where == Memory::Device && forceStaging);
    if (mappable)
      vk.vkMapMemory(device, b.memory, 0, VK_WHOLE_SIZE, 0, &b.mapped);
    b.size = size;
    return nullptr;
  }

  /// Fills a buffer: directly when it is mapped, else through a staging
  /// buffer and a copy on the queue.
  kiln_status upload(Buffer &dst, const void *data, uint64_t size) {
    if (size == 0)
      return nullptr;
    if (dst.mapped) {
      std::memcpy(dst.mapped, data, size);
      return nullptr;
    }
    Buffer staging;
    kiln_status st = allocate(size, staging, Memory::Host);
    VkCommandBuffer cmd = VK_NULL_HANDLE;
    if (!st) {
      std::memcpy(staging.mapped, data, size);
      auto cai = make<VkCommandBufferAllocateInfo>(
          VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO);
      cai.commandPool = commandPool;
      cai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
      cai.commandBufferCount = 1;
      if (VkResult r = vk.vkAllocateCommandBuffers(device, &cai, &cmd)) {
        cmd = VK_NULL_HANDLE;
        st = makeStatus(KILN_INTERNAL, "vkAllocateCommandBuffers: %s",
                        vkError(r).c_str());
      }
    }
    if (!st) {
      auto begin = make<VkCommandBufferBeginInfo>(
          VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO);
      begin.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
      vk.vkBeginCommandBuffer(cmd, &begin);
      VkBufferCopy region{0, 0, size};
      vk.vkCmdCopyBuffer(cmd, staging.buffer, dst.buffer, 1, &region);
      // The copy is visible to every later dispatch on this queue.
      auto mb = make<VkMemoryBarrier>(VK_STRUCTURE_TYPE_MEMORY_BARRIER);
      mb.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
      mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT;
      vk.vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT,
                              VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb,
                              0, nullptr, 0, nullptr);
      vk.vkEndCommandBuffer(cmd);
      auto submit = make<VkSubmitInfo>(VK_STRUCTURE_TYPE_SUBMIT_INFO);
      submit.commandBufferCount = 1;
      submit.pCommandBuffers = &cmd;
      if (VkResult r = vk.vkQueueSubmit(queue, 1, &submit, VK_NULL_HANDLE))
        st = makeStatus(KILN_INTERNAL, "vkQueueSubmit (upload): %s",
                        vkError(r).c_str());
      else if (VkResult r = vk.vkQueueWaitIdle(queue))
        st = makeStatus(KILN_INTERNAL, "vkQueueWaitIdle (upload): %s",
                        vkError(r).c_str());
    }
    if (cmd)
      vk.vkFreeCommandBuffers(device, commandPool, 1, &cmd);
    release(staging);
    return st;
  }

  void release(Buffer &b) {
    if (b.memory) {
      if (b.mapped)
        vk.vkUnmapMemory(device, b.memory);
      vk.vkFreeMemory(device, b.memory, nullptr);
    }
    if (b.buffer)
      vk.vkDestroyBuffer(device, b.buffer, nullptr);
    b = Buffer();
  }

  Vk vk;
  const kiln_artifact *artifact = nullptr;
  const fb::Target *target = nullptr;
  VkInstance instance = VK_NULL_HANDLE;
  VkPhysicalDevice physical = VK_NULL_HANDLE;
  VkPhysicalDeviceMemoryProperties memoryProps{};
  VkDevice device = VK_NULL_HANDLE;
  VkQueue queue = VK_NULL_HANDLE;
  VkCommandPool commandPool = VK_NULL_HANDLE;
  std::map<const fb::FunctionImpl *, Recorded> recorded;
  std::string deviceName;
  std::vector<Kernel> kernels;
  std::vector<Buffer> constants;
  Buffer kvCache; // the LLM session's paged KV cache (first use)
  bool forceStaging = false;
  VkPhysicalDeviceLimits limits{};
  uint32_t deviceApiVersion = VK_API_VERSION_1_1;
};

} // namespace

namespace kiln::rt {

kiln_status createVulkanDevice(const kiln_artifact *artifact,
                               const fb::Target *target, int ordinal,
                               std::unique_ptr<Device> *out) {
  auto d = std::make_unique<VulkanDevice>();
  KILN_RETURN_IF_ERROR(d->init(artifact, target, ordinal));
  *out = std::move(d);
  return nullptr;
}

} // namespace kiln::rt
