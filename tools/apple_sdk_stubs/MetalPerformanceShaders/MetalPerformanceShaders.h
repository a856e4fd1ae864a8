// Declarations transcribed from Apple's documentation for syntax checking on
// Linux; not Apple's headers. MPSCore types used by MPSGraph and torch.
#pragma once
#include <Metal/Metal.h>

NS_ASSUME_NONNULL_BEGIN

typedef NSArray<NSNumber*> MPSShape;

// Raw values are those documented for MPSDataType; Bool's exact encoding is
// not documented (any distinct value serves a syntax check).
typedef NS_ENUM(uint32_t, MPSDataType){
    MPSDataTypeInvalid = 0,
    MPSDataTypeFloat32 API_AVAILABLE(macos(10.13)) = 0x10000000 | 32,
    MPSDataTypeFloat16 API_AVAILABLE(macos(10.13)) = 0x10000000 | 16,
    MPSDataTypeComplexFloat32 API_AVAILABLE(macos(13.0)) = 0x10000000 | 0x01000000 | 64,
    MPSDataTypeInt8 API_AVAILABLE(macos(10.13)) = 0x20000000 | 8,
    MPSDataTypeInt32 API_AVAILABLE(macos(10.13)) = 0x20000000 | 32,
    MPSDataTypeInt64 API_AVAILABLE(macos(11.0)) = 0x20000000 | 64,
    MPSDataTypeUInt8 API_AVAILABLE(macos(10.13)) = 8,
    MPSDataTypeBool API_AVAILABLE(macos(12.0)) = 0x80000000 | 8,
    MPSDataTypeBFloat16 API_AVAILABLE(macos(14.0)) = 0x80000000 | 0x10000000 | 16,
};

API_AVAILABLE(macos(10.15))
@interface MPSCommandBuffer : NSObject <MTLCommandBuffer>
+ (instancetype)commandBufferWithCommandBuffer:(id<MTLCommandBuffer>)commandBuffer;
+ (instancetype)commandBufferFromCommandQueue:(id<MTLCommandQueue>)commandQueue;
@end

NS_ASSUME_NONNULL_END
