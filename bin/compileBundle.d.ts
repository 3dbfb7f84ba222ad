import type { Script } from "node:vm"

export declare const bundlePath: string
export declare const codeCachePath: string
export declare const compileBundle: () => Script
