"""``python -m alexnet_ext``: print what this installation has (build, BLAS, threads, CUDA)."""
import alexnet_ext as ax


def main() -> None:
    s = ax.cuda_status()
    print(f"alexnet_ext {ax.__version__}")
    print(f"CPU threads : {ax.get_num_threads()}")
    print(f"BLAS        : {ax._core.blas_config()}")
    print(f"CUDA build  : {'yes' if s['built_with_cuda'] else 'no'}")
    if s["built_with_cuda"]:
        cublas = hasattr(getattr(ax._core, "cuda", None), "fc_forward")
        print(f"cuBLAS      : {'yes' if cublas else 'no (fc has no GPU kernel in this build)'}")
    if s["available"]:
        for d in s["devices"]:
            cc = ".".join(map(str, d["compute_capability"]))
            print(f"GPU {d['index']}       : {d['name']} (sm_{cc.replace('.', '')}, "
                  f"{d['total_memory'] / 2**30:.0f} GiB)")
    else:
        print(f"CUDA        : not available: {s['reason']}")


if __name__ == "__main__":
    main()
