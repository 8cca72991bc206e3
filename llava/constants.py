"""Token constants shared by the prompt builder, the tokenizer helper and the model (LLaVA-NeXT names)."""

# Controller/worker constants of LLaVA's serving stack, kept so scripts importing them still work.
CONTROLLER_HEART_BEAT_EXPIRATION = 30
WORKER_HEART_BEAT_INTERVAL = 15
LOGDIR = "."

# Label value the loss ignores.
IGNORE_INDEX = -100
# Placeholder id `tokenizer_image_token` puts where "<image>" was; the model splices visual tokens there.
IMAGE_TOKEN_INDEX = -200
DEFAULT_IMAGE_TOKEN = "<image>"
DEFAULT_IMAGE_PATCH_TOKEN = "<im_patch>"
DEFAULT_IM_START_TOKEN = "<im_start>"
DEFAULT_IM_END_TOKEN = "<im_end>"
IMAGE_PLACEHOLDER = "<image-placeholder>"
