// Declarations transcribed from Apple's documentation for syntax checking on
// Linux; not Apple's headers. Only the Metal API mps_ext (and torch's MPS
// headers it includes) use; see /docs/mpsgraph-lowering.md for versions.
#pragma once
#include <Foundation/Foundation.h>

NS_ASSUME_NONNULL_BEGIN

typedef struct {
  NSUInteger width, height, depth;
} MTLSize;

static inline MTLSize MTLSizeMake(NSUInteger width, NSUInteger height, NSUInteger depth)
    API_AVAILABLE(macos(10.11)) {
  MTLSize s = {width, height, depth};
  return s;
}

typedef NS_OPTIONS(NSUInteger, MTLResourceOptions){
    MTLResourceStorageModeShared API_AVAILABLE(macos(10.11)) = 0UL << 4,
};

@protocol MTLDevice;
@protocol MTLCommandBuffer;
@protocol MTLComputeCommandEncoder;

// Apple's docs give the enum itself no availability; its properties are 15.0.
typedef NS_ENUM(NSInteger, MTLMathMode){
    MTLMathModeSafe = 0,
    MTLMathModeRelaxed = 1,
    MTLMathModeFast = 2,
};
typedef NS_ENUM(NSInteger, MTLMathFloatingPointFunctions){
    MTLMathFloatingPointFunctionsFast = 0,
    MTLMathFloatingPointFunctionsPrecise = 1,
};

API_AVAILABLE(macos(10.11))
@interface MTLCompileOptions : NSObject <NSCopying>
@property(readwrite, nonatomic) BOOL fastMathEnabled API_DEPRECATED("mathMode", macos(10.11, 15.0));
@property(readwrite, nonatomic) MTLMathMode mathMode API_AVAILABLE(macos(15.0));
@property(readwrite, nonatomic) MTLMathFloatingPointFunctions mathFloatingPointFunctions API_AVAILABLE(macos(15.0));
@end

API_AVAILABLE(macos(10.11))
@protocol MTLResource <NSObject>
@end

API_AVAILABLE(macos(10.11))
@protocol MTLBuffer <MTLResource>
- (void*)contents NS_RETURNS_INNER_POINTER;
@property(readonly) NSUInteger length;
@end

API_AVAILABLE(macos(10.11))
@protocol MTLFunction <NSObject>
@end

API_AVAILABLE(macos(10.11))
@protocol MTLLibrary <NSObject>
- (nullable id<MTLFunction>)newFunctionWithName:(NSString*)functionName;
@end

API_AVAILABLE(macos(10.11))
@protocol MTLComputePipelineState <NSObject>
@property(readonly) NSUInteger maxTotalThreadsPerThreadgroup;
@property(readonly) NSUInteger threadExecutionWidth;
@end

API_AVAILABLE(macos(10.14))
@protocol MTLSharedEvent <NSObject>
@end

// MTLEvent.h: named by ATen/mps/MPSEvent.h (PyTorch's MPS events).
typedef void (^MTLSharedEventNotificationBlock)(id<MTLSharedEvent>, uint64_t value) API_AVAILABLE(macos(10.14));

API_AVAILABLE(macos(10.14))
@interface MTLSharedEventListener : NSObject
@end

typedef void (^MTLCommandBufferHandler)(id<MTLCommandBuffer>);

API_AVAILABLE(macos(10.11))
@protocol MTLCommandEncoder <NSObject>
- (void)endEncoding;
@end

API_AVAILABLE(macos(10.11))
@protocol MTLComputeCommandEncoder <MTLCommandEncoder>
- (void)setComputePipelineState:(id<MTLComputePipelineState>)state;
- (void)setBuffer:(nullable id<MTLBuffer>)buffer offset:(NSUInteger)offset atIndex:(NSUInteger)index;
- (void)setBytes:(const void*)bytes length:(NSUInteger)length atIndex:(NSUInteger)index
    API_AVAILABLE(macos(10.11));
- (void)dispatchThreads:(MTLSize)threadsPerGrid threadsPerThreadgroup:(MTLSize)threadsPerThreadgroup
    API_AVAILABLE(macos(10.13));
@end

API_AVAILABLE(macos(10.11))
@protocol MTLCommandBuffer <NSObject>
- (nullable id<MTLComputeCommandEncoder>)computeCommandEncoder;
- (void)commit;
- (void)waitUntilCompleted;
// Host times (seconds) of the GPU's execution; valid once the buffer completed.
@property(readonly) CFTimeInterval GPUStartTime API_AVAILABLE(macos(10.15));
@property(readonly) CFTimeInterval GPUEndTime API_AVAILABLE(macos(10.15));
@end

API_AVAILABLE(macos(10.11))
@protocol MTLCommandQueue <NSObject>
- (nullable id<MTLCommandBuffer>)commandBuffer;
@end

API_AVAILABLE(macos(10.11))
@protocol MTLDevice <NSObject>
- (uint64_t)recommendedMaxWorkingSetSize API_AVAILABLE(macos(10.12));  // a readonly property
- (NSUInteger)currentAllocatedSize API_AVAILABLE(macos(10.13));        // a readonly property
- (nullable id<MTLCommandQueue>)newCommandQueue;
- (nullable id<MTLBuffer>)newBufferWithLength:(NSUInteger)length options:(MTLResourceOptions)options;
- (nullable id<MTLLibrary>)newLibraryWithSource:(NSString*)source
                                        options:(nullable MTLCompileOptions*)options
                                          error:(__autoreleasing NSError* _Nullable* _Nullable)error;
- (nullable id<MTLComputePipelineState>)newComputePipelineStateWithFunction:(id<MTLFunction>)computeFunction
                                                                       error:(__autoreleasing NSError* _Nullable* _Nullable)error;
@end

#ifdef __cplusplus
extern "C" {
#endif
id<MTLDevice> _Nullable MTLCreateSystemDefaultDevice(void) API_AVAILABLE(macos(10.11))
    __attribute__((ns_returns_retained));
// Not Metal but macOS's <time.h> (Linux's lacks it); ATen/mps/MPSEvent.h uses it.
uint64_t clock_gettime_nsec_np(int clock_id);  // clockid_t there
#ifdef __cplusplus
}
#endif

NS_ASSUME_NONNULL_END
