# Bakes the Sightfleet image (worker, web and controller share it; user data picks the role).
#   git archive --format=tar.gz -o /tmp/sightfleet.tar.gz HEAD
#   packer init ami/packer && packer build -var region=us-east-1 ami/packer
# The result is tagged sightfleet:image=sightfleet; put its id in SIGHTFLEET_IMAGE_ID.
packer {
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.3.0"
    }
  }
}

variable "region" {
  type    = string
  default = "us-east-1"
}

variable "instance_type" {
  type    = string
  default = "t3.large"
}

variable "source_tarball" {
  type        = string
  default     = "/tmp/sightfleet.tar.gz"
  description = "git archive of the repository to install"
}

variable "version" {
  type    = string
  default = "dev"
}

source "amazon-ebs" "sightfleet" {
  region        = var.region
  instance_type = var.instance_type
  ami_name      = "sightfleet-${var.version}-${formatdate("YYYYMMDD-hhmmss", timestamp())}"
  ssh_username  = "ubuntu"
  source_ami_filter {
    filters = {
      name                = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = ["099720109477"] # Canonical
    most_recent = true
  }
  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_size           = 16
    volume_type           = "gp3"
    delete_on_termination = true
    encrypted             = true
  }
  # The image's snapshot is encrypted too, so every instance booted from it has an encrypted root.
  encrypt_boot = true
  # IMDSv2 only: the worker reads its instance id with a session token. imds_support marks the
  # image itself, so instances launched from it require tokens whatever their launch settings say.
  imds_support = "v2.0"
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
  tags = {
    "sightfleet:image"   = "sightfleet"
    "sightfleet:version" = var.version
  }
}

build {
  sources = ["source.amazon-ebs.sightfleet"]

  provisioner "file" {
    source      = var.source_tarball
    destination = "/tmp/sightfleet.tar.gz"
  }

  provisioner "shell" {
    inline = [
      "mkdir -p /tmp/sightfleet && tar -xzf /tmp/sightfleet.tar.gz -C /tmp/sightfleet",
      "sudo bash /tmp/sightfleet/ami/install.sh /tmp/sightfleet",
      "rm -rf /tmp/sightfleet /tmp/sightfleet.tar.gz",
    ]
  }
}
