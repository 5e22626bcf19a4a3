"""The agent image's manifest digest, recorded by the release pipeline (hack/release --digest).

Empty in git: a plugin built from the repo uses the image by its version tag. A released
package carries the digest the pipeline pushed, so version X always runs the agent image of
version X, whatever later happens to the tag. Do not edit by hand.
"""

DIGEST = ""
