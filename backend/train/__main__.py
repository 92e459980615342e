"""`python -m backend.train STAGE [options]`: run one training stage (see `--help` of each)."""
import importlib
import sys

STAGES = {"vae": "backend.train.vae", "prior": "backend.train.prior", "sap": "backend.train.sap",
          "voxel-encoder": "backend.train.voxel_encoder", "template": "backend.train.template"}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in STAGES:
        print(f"usage: python -m backend.train {{{','.join(STAGES)}}} [options]\n"
              "       python -m backend.train STAGE --help", file=sys.stderr)
        return 2
    return importlib.import_module(STAGES[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
