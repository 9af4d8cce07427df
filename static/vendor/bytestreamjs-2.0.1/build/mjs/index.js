export * from "./byte_stream";
export * from "./seq_stream";
export * from "./helpers";
export * from "./bit_stream";
export * from "./seq_bit_stream";
