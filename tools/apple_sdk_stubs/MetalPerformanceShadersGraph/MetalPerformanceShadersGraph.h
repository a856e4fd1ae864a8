// Declarations transcribed from Apple's documentation for syntax checking on
// Linux; not Apple's headers. Only the MPSGraph API mps_ext uses, with the
// minimum macOS of each method (class/category availability where the method
// has none of its own). Categories are folded into one @interface per class.
#pragma once
#include <MetalPerformanceShaders/MetalPerformanceShaders.h>

NS_ASSUME_NONNULL_BEGIN

API_AVAILABLE(macos(11.0))
@interface MPSGraphObject : NSObject
@end

API_AVAILABLE(macos(12.0))
@interface MPSGraphType : MPSGraphObject <NSCopying>
@end

API_AVAILABLE(macos(11.0))
@interface MPSGraphShapedType : MPSGraphType
- (instancetype)initWithShape:(MPSShape* _Nullable)shape dataType:(MPSDataType)dataType;
@end

API_AVAILABLE(macos(11.0))
@interface MPSGraphTensor : MPSGraphObject <NSCopying>
@end

API_AVAILABLE(macos(11.0))
@interface MPSGraphOperation : NSObject <NSCopying>
@end

API_AVAILABLE(macos(11.0))
@interface MPSGraphDevice : MPSGraphObject
+ (instancetype)deviceWithMTLDevice:(id<MTLDevice>)metalDevice;
@end

API_AVAILABLE(macos(11.0))
@interface MPSGraphTensorData : MPSGraphObject
- (instancetype)initWithMTLBuffer:(id<MTLBuffer>)buffer shape:(MPSShape*)shape dataType:(MPSDataType)dataType;
@end

API_AVAILABLE(macos(11.0))
@interface MPSGraphExecutionDescriptor : MPSGraphObject
@end

API_AVAILABLE(macos(12.0))
@interface MPSGraphCompilationDescriptor : MPSGraphObject <NSCopying>
@end

API_AVAILABLE(macos(12.0))
@interface MPSGraphExecutableExecutionDescriptor : MPSGraphObject <NSCopying>
@end

API_AVAILABLE(macos(12.0))
@interface MPSGraphExecutable : MPSGraphObject
@property(readonly, atomic, nullable) NSArray<MPSGraphTensor*>* feedTensors;
@property(readonly, atomic, nullable) NSArray<MPSGraphTensor*>* targetTensors;
- (NSArray<MPSGraphTensorData*>*)encodeToCommandBuffer:(MPSCommandBuffer*)commandBuffer
                                          inputsArray:(NSArray<MPSGraphTensorData*>*)inputsArray
                                         resultsArray:(NSArray<MPSGraphTensorData*>* _Nullable)resultsArray
                                  executionDescriptor:(MPSGraphExecutableExecutionDescriptor* _Nullable)executionDescriptor
    API_AVAILABLE(macos(12.0));
@end

typedef NSDictionary<MPSGraphTensor*, MPSGraphShapedType*> MPSGraphTensorShapedTypeDictionary;

// MPSGraphFourierTransformOps.h (14.0). Size scales by 1/V, Unitary by
// 1/sqrt(V), V the volume of the transformed axes.
typedef NS_ENUM(NSUInteger, MPSGraphFFTScalingMode) {
  MPSGraphFFTScalingModeNone API_AVAILABLE(macos(14.0)) = 0L,
  MPSGraphFFTScalingModeSize API_AVAILABLE(macos(14.0)) = 1L,
  MPSGraphFFTScalingModeUnitary API_AVAILABLE(macos(14.0)) = 2L,
};

API_AVAILABLE(macos(14.0))
@interface MPSGraphFFTDescriptor : MPSGraphObject <NSCopying>
@property(readwrite, nonatomic) BOOL inverse;
@property(readwrite, nonatomic) MPSGraphFFTScalingMode scalingMode;
@property(readwrite, nonatomic) BOOL roundToOddHermitean;
+ (nullable instancetype)descriptor;
@end

// MPSGraphScatterOps.h: how scattered values combine with the destination.
typedef NS_ENUM(NSInteger, MPSGraphScatterMode) {
  MPSGraphScatterModeAdd API_AVAILABLE(macos(11.0)) = 0L,
  MPSGraphScatterModeSub API_AVAILABLE(macos(11.0)) = 1L,
  MPSGraphScatterModeMul API_AVAILABLE(macos(11.0)) = 2L,
  MPSGraphScatterModeDiv API_AVAILABLE(macos(11.0)) = 3L,
  MPSGraphScatterModeMin API_AVAILABLE(macos(11.0)) = 4L,
  MPSGraphScatterModeMax API_AVAILABLE(macos(11.0)) = 5L,
  MPSGraphScatterModeSet API_AVAILABLE(macos(12.0)) = 6L,
};

// MPSGraphConvolutionOps.h. Layouts NCHW/OIHW (11.0), NCDHW/OIDHW (13.2).
typedef NS_ENUM(NSUInteger, MPSGraphTensorNamedDataLayout) {
  MPSGraphTensorNamedDataLayoutNCHW API_AVAILABLE(macos(11.0)) = 0L,
  MPSGraphTensorNamedDataLayoutNHWC API_AVAILABLE(macos(11.0)) = 1L,
  MPSGraphTensorNamedDataLayoutOIHW API_AVAILABLE(macos(11.0)) = 2L,
  MPSGraphTensorNamedDataLayoutHWIO API_AVAILABLE(macos(11.0)) = 3L,
  MPSGraphTensorNamedDataLayoutCHW API_AVAILABLE(macos(11.0)) = 4L,
  MPSGraphTensorNamedDataLayoutHWC API_AVAILABLE(macos(11.0)) = 5L,
  MPSGraphTensorNamedDataLayoutHW API_AVAILABLE(macos(11.0)) = 6L,
  MPSGraphTensorNamedDataLayoutNCDHW API_AVAILABLE(macos(13.2)) = 7L,
  MPSGraphTensorNamedDataLayoutNDHWC API_AVAILABLE(macos(13.2)) = 8L,
  MPSGraphTensorNamedDataLayoutOIDHW API_AVAILABLE(macos(13.2)) = 9L,
  MPSGraphTensorNamedDataLayoutDHWIO API_AVAILABLE(macos(13.2)) = 10L,
};

typedef NS_ENUM(NSUInteger, MPSGraphPaddingStyle) {
  MPSGraphPaddingStyleExplicit API_AVAILABLE(macos(11.0)) = 0L,
  MPSGraphPaddingStyleTF_VALID API_AVAILABLE(macos(11.0)) = 1L,
  MPSGraphPaddingStyleTF_SAME API_AVAILABLE(macos(11.0)) = 2L,
  MPSGraphPaddingStyleExplicitOffset API_AVAILABLE(macos(12.0)) = 3L,
};

API_AVAILABLE(macos(11.0))
@interface MPSGraphConvolution2DOpDescriptor : MPSGraphObject <NSCopying>
+ (nullable instancetype)descriptorWithStrideInX:(NSUInteger)strideInX strideInY:(NSUInteger)strideInY dilationRateInX:(NSUInteger)dilationRateInX dilationRateInY:(NSUInteger)dilationRateInY groups:(NSUInteger)groups paddingLeft:(NSUInteger)paddingLeft paddingRight:(NSUInteger)paddingRight paddingTop:(NSUInteger)paddingTop paddingBottom:(NSUInteger)paddingBottom paddingStyle:(MPSGraphPaddingStyle)paddingStyle dataLayout:(MPSGraphTensorNamedDataLayout)dataLayout weightsLayout:(MPSGraphTensorNamedDataLayout)weightsLayout;
@end

API_AVAILABLE(macos(13.2))
@interface MPSGraphConvolution3DOpDescriptor : MPSGraphObject <NSCopying>
+ (nullable instancetype)descriptorWithStrideInX:(NSUInteger)strideInX strideInY:(NSUInteger)strideInY strideInZ:(NSUInteger)strideInZ dilationRateInX:(NSUInteger)dilationRateInX dilationRateInY:(NSUInteger)dilationRateInY dilationRateInZ:(NSUInteger)dilationRateInZ groups:(NSUInteger)groups paddingLeft:(NSUInteger)paddingLeft paddingRight:(NSUInteger)paddingRight paddingTop:(NSUInteger)paddingTop paddingBottom:(NSUInteger)paddingBottom paddingFront:(NSUInteger)paddingFront paddingBack:(NSUInteger)paddingBack paddingStyle:(MPSGraphPaddingStyle)paddingStyle dataLayout:(MPSGraphTensorNamedDataLayout)dataLayout weightsLayout:(MPSGraphTensorNamedDataLayout)weightsLayout;
@end

// MPSGraphPoolingOps.h: the 4-D pooling descriptor (12.0); returned indices
// (12.2): flattened over the tensor's innermost N dims (Global) or within the
// window (Local); int32 only.
typedef NS_ENUM(NSUInteger, MPSGraphPoolingReturnIndicesMode) {
  MPSGraphPoolingReturnIndicesNone API_AVAILABLE(macos(12.2)) = 0L,
  MPSGraphPoolingReturnIndicesGlobalFlatten1D API_AVAILABLE(macos(12.2)) = 1L,
  MPSGraphPoolingReturnIndicesGlobalFlatten2D API_AVAILABLE(macos(12.2)) = 2L,
  MPSGraphPoolingReturnIndicesGlobalFlatten3D API_AVAILABLE(macos(12.2)) = 3L,
  MPSGraphPoolingReturnIndicesGlobalFlatten4D API_AVAILABLE(macos(12.2)) = 4L,
  MPSGraphPoolingReturnIndicesLocalFlatten1D API_AVAILABLE(macos(12.2)) = 5L,
  MPSGraphPoolingReturnIndicesLocalFlatten2D API_AVAILABLE(macos(12.2)) = 6L,
  MPSGraphPoolingReturnIndicesLocalFlatten3D API_AVAILABLE(macos(12.2)) = 7L,
  MPSGraphPoolingReturnIndicesLocalFlatten4D API_AVAILABLE(macos(12.2)) = 8L,
};

API_AVAILABLE(macos(12.0))
@interface MPSGraphPooling4DOpDescriptor : MPSGraphObject <NSCopying>
@property(readwrite, nonatomic, copy) NSArray<NSNumber*>* kernelSizes;
@property(readwrite, nonatomic, copy) NSArray<NSNumber*>* strides;
@property(readwrite, nonatomic, copy) NSArray<NSNumber*>* dilationRates;
@property(readwrite, nonatomic, copy) NSArray<NSNumber*>* paddingValues;
@property(readwrite, nonatomic) MPSGraphPaddingStyle paddingStyle;
@property(readwrite, nonatomic) BOOL ceilMode;
@property(readwrite, nonatomic) BOOL includeZeroPadToAverage;
@property(readwrite, nonatomic) MPSGraphPoolingReturnIndicesMode returnIndicesMode API_AVAILABLE(macos(12.2));
@property(readwrite, nonatomic) MPSDataType returnIndicesDataType API_AVAILABLE(macos(12.2));
+ (nullable instancetype)descriptorWithKernelSizes:(NSArray<NSNumber*>*)kernelSizes strides:(NSArray<NSNumber*>*)strides dilationRates:(NSArray<NSNumber*>*)dilationRates paddingValues:(NSArray<NSNumber*>*)paddingValues paddingStyle:(MPSGraphPaddingStyle)paddingStyle;
@end

API_AVAILABLE(macos(11.0))
@interface MPSGraph : MPSGraphObject
+ (instancetype)new;

- (MPSGraphExecutable*)compileWithDevice:(MPSGraphDevice* _Nullable)device
                                   feeds:(MPSGraphTensorShapedTypeDictionary*)feeds
                           targetTensors:(NSArray<MPSGraphTensor*>*)targetTensors
                        targetOperations:(NSArray<MPSGraphOperation*>* _Nullable)targetOperations
                   compilationDescriptor:(MPSGraphCompilationDescriptor* _Nullable)compilationDescriptor
    API_AVAILABLE(macos(12.0));

// MemoryOps (11.0)
- (MPSGraphTensor*)placeholderWithShape:(MPSShape* _Nullable)shape dataType:(MPSDataType)dataType name:(NSString* _Nullable)name;
- (MPSGraphTensor*)constantWithScalar:(double)scalar dataType:(MPSDataType)dataType;
- (MPSGraphTensor*)constantWithScalar:(double)scalar shape:(MPSShape*)shape dataType:(MPSDataType)dataType;
- (MPSGraphTensor*)constantWithData:(NSData*)data shape:(MPSShape*)shape dataType:(MPSDataType)dataType;
// PoolingOps
- (MPSGraphTensor*)maxPooling4DWithSourceTensor:(MPSGraphTensor*)source descriptor:(MPSGraphPooling4DOpDescriptor*)descriptor name:(NSString* _Nullable)name API_AVAILABLE(macos(12.0));
- (NSArray<MPSGraphTensor*>*)maxPooling4DReturnIndicesWithSourceTensor:(MPSGraphTensor*)source descriptor:(MPSGraphPooling4DOpDescriptor*)descriptor name:(NSString* _Nullable)name API_AVAILABLE(macos(12.2));
- (MPSGraphTensor*)maxPooling4DGradientWithGradientTensor:(MPSGraphTensor*)gradient indicesTensor:(MPSGraphTensor*)indices outputShape:(MPSShape*)outputShape descriptor:(MPSGraphPooling4DOpDescriptor*)descriptor name:(NSString* _Nullable)name API_AVAILABLE(macos(13.0));
- (MPSGraphTensor*)avgPooling4DWithSourceTensor:(MPSGraphTensor*)source descriptor:(MPSGraphPooling4DOpDescriptor*)descriptor name:(NSString* _Nullable)name API_AVAILABLE(macos(12.0));
- (MPSGraphTensor*)avgPooling4DGradientWithGradientTensor:(MPSGraphTensor*)gradient sourceTensor:(MPSGraphTensor*)source descriptor:(MPSGraphPooling4DOpDescriptor*)descriptor name:(NSString* _Nullable)name API_AVAILABLE(macos(12.0));
- (MPSGraphTensor*)floorModuloWithPrimaryTensor:(MPSGraphTensor*)primaryTensor secondaryTensor:(MPSGraphTensor*)secondaryTensor name:(NSString* _Nullable)name;
// ArithmeticOps: bitwise (13.0)
- (MPSGraphTensor*)bitwiseNOTWithTensor:(MPSGraphTensor*)tensor name:(NSString* _Nullable)name API_AVAILABLE(macos(13.0));
- (MPSGraphTensor*)bitwiseANDWithPrimaryTensor:(MPSGraphTensor*)primaryTensor secondaryTensor:(MPSGraphTensor*)secondaryTensor name:(NSString* _Nullable)name API_AVAILABLE(macos(13.0));
- (MPSGraphTensor*)bitwiseORWithPrimaryTensor:(MPSGraphTensor*)primaryTensor secondaryTensor:(MPSGraphTensor*)secondaryTensor name:(NSString* _Nullable)name API_AVAILABLE(macos(13.0));
- (MPSGraphTensor*)bitwiseXORWithPrimaryTensor:(MPSGraphTensor*)primaryTensor secondaryTensor:(MPSGraphTensor*)secondaryTensor name:(NSString* _Nullable)name API_AVAILABLE(macos(13.0));
- (MPSGraphTensor*)bitwiseLeftShiftWithPrimaryTensor:(MPSGraphTensor*)primaryTensor secondaryTensor:(MPSGraphTensor*)secondaryTensor name:(NSString* _Nullable)name API_AVAILABLE(macos(13.0));
- (MPSGraphTensor*)bitwiseRightShiftWithPrimaryTensor:(MPSGraphTensor*)primaryTensor secondaryTensor:(MPSGraphTensor*)secondaryTensor name:(NSString* _Nullable)name API_AVAILABLE(macos(13.0));
- (MPSGraphTensor*)constantWithRealPart:(double)realPart imaginaryPart:(double)imaginaryPart dataType:(MPSDataType)dataType API_AVAILABLE(macos(14.0));

// MPSGraphTensorShapeOps
- (MPSGraphTensor*)castTensor:(MPSGraphTensor*)tensor toType:(MPSDataType)type name:(NSString* _Nullable)name
    API_AVAILABLE(macos(12.0));
- (MPSGraphTensor*)reshapeTensor:(MPSGraphTensor*)tensor withShape:(MPSShape*)shape name:(NSString* _Nullable)name;
- (MPSGraphTensor*)transposeTensor:(MPSGraphTensor*)tensor permutation:(NSArray<NSNumber*>*)permutation name:(NSString* _Nullable)name
    API_AVAILABLE(macos(13.0));
- (MPSGraphTensor*)sliceTensor:(MPSGraphTensor*)tensor dimension:(NSUInteger)dimensionIndex start:(NSInteger)start length:(NSInteger)length name:(NSString* _Nullable)name;
- (MPSGraphTensor*)sliceTensor:(MPSGraphTensor*)tensor starts:(NSArray<NSNumber*>*)starts ends:(NSArray<NSNumber*>*)ends strides:(NSArray<NSNumber*>*)strides name:(NSString* _Nullable)name;
- (MPSGraphTensor*)sliceUpdateDataTensor:(MPSGraphTensor*)dataTensor updateTensor:(MPSGraphTensor*)updateTensor starts:(NSArray<NSNumber*>*)starts ends:(NSArray<NSNumber*>*)ends strides:(NSArray<NSNumber*>*)strides startMask:(uint32_t)startMask endMask:(uint32_t)endMask squeezeMask:(uint32_t)squeezeMask name:(NSString* _Nullable)name
    API_AVAILABLE(macos(14.4));
- (MPSGraphTensor*)sliceUpdateDataTensor:(MPSGraphTensor*)dataTensor updateTensor:(MPSGraphTensor*)updateTensor startsTensor:(MPSGraphTensor*)startsTensor endsTensor:(MPSGraphTensor*)endsTensor stridesTensor:(MPSGraphTensor*)stridesTensor startMask:(uint32_t)startMask endMask:(uint32_t)endMask squeezeMask:(uint32_t)squeezeMask name:(NSString* _Nullable)name
    API_AVAILABLE(macos(14.4));
- (MPSGraphTensor*)shapeOfTensor:(MPSGraphTensor*)tensor name:(NSString* _Nullable)name API_AVAILABLE(macos(12.0));
- (MPSGraphTensor*)concatTensors:(NSArray<MPSGraphTensor*>*)tensors dimension:(NSInteger)dimensionIndex name:(NSString* _Nullable)name;
- (MPSGraphTensor*)broadcastTensor:(MPSGraphTensor*)tensor toShape:(MPSShape*)shape name:(NSString* _Nullable)name
    API_AVAILABLE(macos(12.0));

// MPSGraphArithmeticOps (11.0 unless marked)
- (MPSGraphTensor*)identityWithTensor:(MPSGraphTensor*)tensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)absoluteWithTensor:(MPSGraphTensor*)tensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)negativeWithTensor:(MPSGraphTensor*)tensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)signWithTensor:(MPSGraphTensor*)tensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)exponentWithTensor:(MPSGraphTensor*)tensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)logarithmWithTensor:(MPSGraphTensor*)tensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)squareRootWithTensor:(MPSGraphTensor*)tensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)reverseSquareRootWithTensor:(MPSGraphTensor*)tensor name:(NSString* _Nullable)name
    API_DEPRECATED("reciprocalSquareRootWithTensor", macos(11.0, 15.0));
- (MPSGraphTensor*)reciprocalSquareRootWithTensor:(MPSGraphTensor*)tensor name:(NSString* _Nullable)name
    API_AVAILABLE(macos(15.0));
- (MPSGraphTensor*)reciprocalWithTensor:(MPSGraphTensor*)tensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)squareWithTensor:(MPSGraphTensor*)tensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)sinWithTensor:(MPSGraphTensor*)tensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)cosWithTensor:(MPSGraphTensor*)tensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)tanhWithTensor:(MPSGraphTensor*)tensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)floorWithTensor:(MPSGraphTensor*)tensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)ceilWithTensor:(MPSGraphTensor*)tensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)rintWithTensor:(MPSGraphTensor*)tensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)notWithTensor:(MPSGraphTensor*)tensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)isNaNWithTensor:(MPSGraphTensor*)tensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)erfWithTensor:(MPSGraphTensor*)tensor name:(NSString* _Nullable)name;
- (NSArray<MPSGraphTensor*>*)randomUniformTensorWithShape:(MPSShape*)shape
                                              stateTensor:(MPSGraphTensor*)state
                                                     name:(NSString* _Nullable)name;
- (MPSGraphTensor*)coordinateAlongAxis:(NSInteger)axis withShape:(MPSShape*)shape name:(NSString* _Nullable)name
    API_AVAILABLE(macos(12.3));
- (MPSGraphTensor*)additionWithPrimaryTensor:(MPSGraphTensor*)primaryTensor secondaryTensor:(MPSGraphTensor*)secondaryTensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)subtractionWithPrimaryTensor:(MPSGraphTensor*)primaryTensor secondaryTensor:(MPSGraphTensor*)secondaryTensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)multiplicationWithPrimaryTensor:(MPSGraphTensor*)primaryTensor secondaryTensor:(MPSGraphTensor*)secondaryTensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)divisionWithPrimaryTensor:(MPSGraphTensor*)primaryTensor secondaryTensor:(MPSGraphTensor*)secondaryTensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)maximumWithNaNPropagationWithPrimaryTensor:(MPSGraphTensor*)primaryTensor secondaryTensor:(MPSGraphTensor*)secondaryTensor name:(NSString* _Nullable)name
    API_AVAILABLE(macos(12.0));
- (MPSGraphTensor*)minimumWithNaNPropagationWithPrimaryTensor:(MPSGraphTensor*)primaryTensor secondaryTensor:(MPSGraphTensor*)secondaryTensor name:(NSString* _Nullable)name
    API_AVAILABLE(macos(12.0));
- (MPSGraphTensor*)powerWithPrimaryTensor:(MPSGraphTensor*)primaryTensor secondaryTensor:(MPSGraphTensor*)secondaryTensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)logicalANDWithPrimaryTensor:(MPSGraphTensor*)primaryTensor secondaryTensor:(MPSGraphTensor*)secondaryTensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)logicalORWithPrimaryTensor:(MPSGraphTensor*)primaryTensor secondaryTensor:(MPSGraphTensor*)secondaryTensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)equalWithPrimaryTensor:(MPSGraphTensor*)primaryTensor secondaryTensor:(MPSGraphTensor*)secondaryTensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)notEqualWithPrimaryTensor:(MPSGraphTensor*)primaryTensor secondaryTensor:(MPSGraphTensor*)secondaryTensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)lessThanWithPrimaryTensor:(MPSGraphTensor*)primaryTensor secondaryTensor:(MPSGraphTensor*)secondaryTensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)lessThanOrEqualToWithPrimaryTensor:(MPSGraphTensor*)primaryTensor secondaryTensor:(MPSGraphTensor*)secondaryTensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)greaterThanWithPrimaryTensor:(MPSGraphTensor*)primaryTensor secondaryTensor:(MPSGraphTensor*)secondaryTensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)greaterThanOrEqualToWithPrimaryTensor:(MPSGraphTensor*)primaryTensor secondaryTensor:(MPSGraphTensor*)secondaryTensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)selectWithPredicateTensor:(MPSGraphTensor*)predicateTensor truePredicateTensor:(MPSGraphTensor*)truePredicateTensor falsePredicateTensor:(MPSGraphTensor*)falseSelectTensor name:(NSString* _Nullable)name;

// MPSGraphActivationOps (11.0)
- (MPSGraphTensor*)sigmoidWithTensor:(MPSGraphTensor*)tensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)softMaxWithTensor:(MPSGraphTensor*)tensor axis:(NSInteger)axis name:(NSString* _Nullable)name;

// MPSGraphReductionOps (11.0)
- (MPSGraphTensor*)reductionSumWithTensor:(MPSGraphTensor*)tensor axes:(NSArray<NSNumber*>* _Nullable)axes name:(NSString* _Nullable)name;
- (MPSGraphTensor*)reductionProductWithTensor:(MPSGraphTensor*)tensor axes:(NSArray<NSNumber*>* _Nullable)axes name:(NSString* _Nullable)name;
- (MPSGraphTensor*)reductionMaximumPropagateNaNWithTensor:(MPSGraphTensor*)tensor axes:(NSArray<NSNumber*>* _Nullable)axes name:(NSString* _Nullable)name;
- (MPSGraphTensor*)reductionMinimumPropagateNaNWithTensor:(MPSGraphTensor*)tensor axes:(NSArray<NSNumber*>* _Nullable)axes name:(NSString* _Nullable)name;

// MPSGraphLinearAlgebraOps (12.3)
- (MPSGraphTensor*)bandPartWithTensor:(MPSGraphTensor*)inputTensor numLower:(NSInteger)numLower numUpper:(NSInteger)numUpper name:(NSString* _Nullable)name
    API_AVAILABLE(macos(12.3));

// MPSGraphNormalizationOps (11.0)
- (MPSGraphTensor*)meanOfTensor:(MPSGraphTensor*)tensor axes:(NSArray<NSNumber*>*)axes name:(NSString* _Nullable)name;

// MPSGraphMatrixMultiplicationOps (11.0 unless marked)
- (MPSGraphTensor*)matrixMultiplicationWithPrimaryTensor:(MPSGraphTensor*)primaryTensor secondaryTensor:(MPSGraphTensor*)secondaryTensor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)scaledDotProductAttentionWithQueryTensor:(MPSGraphTensor*)queryTensor keyTensor:(MPSGraphTensor*)keyTensor valueTensor:(MPSGraphTensor*)valueTensor maskTensor:(MPSGraphTensor* _Nullable)maskTensor scale:(float)scale name:(NSString* _Nullable)name
    API_AVAILABLE(macos(15.0));
- (MPSGraphTensor*)scaledDotProductAttentionWithQueryTensor:(MPSGraphTensor*)queryTensor keyTensor:(MPSGraphTensor*)keyTensor valueTensor:(MPSGraphTensor*)valueTensor scale:(float)scale name:(NSString* _Nullable)name
    API_AVAILABLE(macos(15.0));

// GatherOps (11.0)
- (MPSGraphTensor*)gatherWithUpdatesTensor:(MPSGraphTensor*)updatesTensor indicesTensor:(MPSGraphTensor*)indicesTensor axis:(NSUInteger)axis batchDimensions:(NSUInteger)batchDimensions name:(NSString* _Nullable)name;
// GatherAlongAxisOps / ScatterAlongAxisOps (12.3; the axis-tensor forms),
// ScatterOps (12.0), TopKOps (12.0).
- (MPSGraphTensor*)gatherAlongAxisTensor:(MPSGraphTensor*)axisTensor withUpdatesTensor:(MPSGraphTensor*)updatesTensor indicesTensor:(MPSGraphTensor*)indicesTensor name:(NSString* _Nullable)name
    API_AVAILABLE(macos(12.3));
- (MPSGraphTensor*)scatterAlongAxisTensor:(MPSGraphTensor*)axisTensor withDataTensor:(MPSGraphTensor*)dataTensor updatesTensor:(MPSGraphTensor*)updatesTensor indicesTensor:(MPSGraphTensor*)indicesTensor mode:(MPSGraphScatterMode)mode name:(NSString* _Nullable)name
    API_AVAILABLE(macos(12.3));
- (MPSGraphTensor*)scatterWithDataTensor:(MPSGraphTensor*)dataTensor updatesTensor:(MPSGraphTensor*)updatesTensor indicesTensor:(MPSGraphTensor*)indicesTensor axis:(NSInteger)axis mode:(MPSGraphScatterMode)mode name:(NSString* _Nullable)name
    API_AVAILABLE(macos(12.0));
- (NSArray<MPSGraphTensor*>*)topKWithSourceTensor:(MPSGraphTensor*)source kTensor:(MPSGraphTensor*)kTensor name:(NSString* _Nullable)name
    API_AVAILABLE(macos(12.0));

// MPSGraphQuantizationOps (the forms used; the per-axis ones are 13.1)
- (MPSGraphTensor*)dequantizeTensor:(MPSGraphTensor*)tensor scaleTensor:(MPSGraphTensor*)scaleTensor zeroPointTensor:(MPSGraphTensor*)zeroPointTensor dataType:(MPSDataType)dataType name:(NSString* _Nullable)name
    API_AVAILABLE(macos(15.0));
- (MPSGraphTensor*)dequantizeTensor:(MPSGraphTensor*)tensor LUTTensor:(MPSGraphTensor*)LUTTensor name:(NSString* _Nullable)name
    API_AVAILABLE(macos(15.0));

// MPSGraphConvolutionOps (2-D: 11.0, 3-D: 13.2)
- (MPSGraphTensor*)convolution2DWithSourceTensor:(MPSGraphTensor*)source weightsTensor:(MPSGraphTensor*)weights descriptor:(MPSGraphConvolution2DOpDescriptor*)descriptor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)convolution2DDataGradientWithIncomingGradientTensor:(MPSGraphTensor*)incomingGradient weightsTensor:(MPSGraphTensor*)weights outputShape:(MPSShape*)outputShape forwardConvolutionDescriptor:(MPSGraphConvolution2DOpDescriptor*)forwardConvolutionDescriptor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)convolution2DWeightsGradientWithIncomingGradientTensor:(MPSGraphTensor*)incomingGradient sourceTensor:(MPSGraphTensor*)source outputShape:(MPSShape*)outputShape forwardConvolutionDescriptor:(MPSGraphConvolution2DOpDescriptor*)forwardConvolutionDescriptor name:(NSString* _Nullable)name;
- (MPSGraphTensor*)convolution3DWithSourceTensor:(MPSGraphTensor*)source weightsTensor:(MPSGraphTensor*)weights descriptor:(MPSGraphConvolution3DOpDescriptor*)descriptor name:(NSString* _Nullable)name
    API_AVAILABLE(macos(13.2));
- (MPSGraphTensor*)convolution3DWeightsGradientWithIncomingGradientTensor:(MPSGraphTensor*)gradient sourceTensor:(MPSGraphTensor*)source outputShapeTensor:(MPSGraphTensor*)outputShapeTensor forwardConvolutionDescriptor:(MPSGraphConvolution3DOpDescriptor*)forwardConvolutionDescriptor name:(NSString* _Nullable)name
    API_AVAILABLE(macos(13.2));

// MPSGraphFourierTransformOps (14.0)
- (MPSGraphTensor*)fastFourierTransformWithTensor:(MPSGraphTensor*)tensor axes:(NSArray<NSNumber*>*)axes descriptor:(MPSGraphFFTDescriptor*)descriptor name:(NSString* _Nullable)name
    API_AVAILABLE(macos(14.0));
- (MPSGraphTensor*)realToHermiteanFFTWithTensor:(MPSGraphTensor*)tensor axes:(NSArray<NSNumber*>*)axes descriptor:(MPSGraphFFTDescriptor*)descriptor name:(NSString* _Nullable)name
    API_AVAILABLE(macos(14.0));
- (MPSGraphTensor*)HermiteanToRealFFTWithTensor:(MPSGraphTensor*)tensor axes:(NSArray<NSNumber*>*)axes descriptor:(MPSGraphFFTDescriptor*)descriptor name:(NSString* _Nullable)name
    API_AVAILABLE(macos(14.0));
@end

NS_ASSUME_NONNULL_END
